"""The pool's jobs as the dispatcher knows them: live submissions (the unit of the running limit),
the scheduler's last answer, the counters, and the one place a job is cancelled."""
from __future__ import annotations

from typing import Sequence

from poolparty.engine.batch_state import Submission
from poolparty.queues.base import QueueAdapter
from poolparty.queues.states import JobStatus


class PoolJobs:
    def __init__(self, queue: QueueAdapter, name: str):
        self.queue = queue
        self.name = name  # the pool's job name: cancelling by name reaches jobs we lost track of
        self.submissions: dict[str, Submission] = {}  # job id -> submission, oldest first
        self.last_states: dict[str, JobStatus] = {}  # element -> status, from the last poll
        self.stats = {"submissions": 0, "resubmissions": 0, "polls": 0, "cancels": 0}
        #: elements that may linger, by home (batch, submission, own chunk): whom to watch for a chunk of
        #: another batch a warm element claimed (its claim record names that home)
        self.homes: dict[tuple[int, int, int], str] = {}

    def add(self, submission: Submission) -> None:
        self.submissions[submission.job_id] = submission

    def cancel(self, elements: Sequence[str], by_name: bool = False) -> None:
        """One scheduler call for these elements (and, ``by_name``, every other job of the pool)."""
        if not elements and not by_name:
            return
        self.stats["cancels"] += 1
        self.queue.cancel(elements, name=self.name if by_name else None)

    def live_job_ids(self) -> list[str]:
        """Job ids of the live submissions that can be cancelled by id."""
        return sorted({s.job_id for s in self.submissions.values() if s.has_job})
