"""The pool's jobs as the dispatcher knows them: live submissions (the unit of the running limit),
the scheduler's last answer, the counters, and the one place a job is cancelled or its status asked."""
from __future__ import annotations

import time
from typing import AbstractSet, Sequence

from poolparty.engine.batch_state import Submission
from poolparty.queues.base import QueueAdapter
from poolparty.queues.shared_status import SharedStatus
from poolparty.queues.states import JobStatus


class PoolJobs:
    def __init__(self, queue: QueueAdapter, name: str):
        self.queue = queue
        self.name = name  # the pool's job name: cancelling by name reaches jobs we lost track of
        self.submissions: dict[str, Submission] = {}  # job id -> submission, oldest first
        self.last_states: dict[str, JobStatus] = {}  # element -> status, from the last poll
        # polls: status polls; shared_polls: those answered by another pool's query (no scheduler call)
        self.stats = {"submissions": 0, "resubmissions": 0, "polls": 0, "shared_polls": 0, "cancels": 0}
        self.status = SharedStatus(queue)
        self._changed_at = 0.0  # wall time of our last submission or cancel: an older snapshot misses it
        #: elements that may linger, by home (batch, submission, own chunk): whom to watch for a chunk of
        #: another batch a warm element claimed (its claim record names that home)
        self.homes: dict[tuple[int, int, int], str] = {}

    def add(self, submission: Submission) -> None:
        self.submissions[submission.job_id] = submission
        self._changed_at = time.time()

    def query(self, awaited: AbstractSet[str]) -> dict[str, JobStatus]:
        """The pool's states: from the user's shared snapshot when it is fresh, else one scheduler query.
        ``awaited``: the elements whose chunks have no result yet (only their ends are worth asking for)."""
        states, shared = self.status.query(self.name, awaited, not_before=self._changed_at)
        self.stats["polls"] += 1
        self.stats["shared_polls"] += shared
        return states

    def cancel(self, elements: Sequence[str], by_name: bool = False) -> None:
        """One scheduler call for these elements (and, ``by_name``, every other job of the pool)."""
        if not elements and not by_name:
            return
        self.stats["cancels"] += 1
        self.queue.cancel(elements, name=self.name if by_name else None)
        self._changed_at = time.time()

    def live_job_ids(self) -> list[str]:
        """Job ids of the live submissions that can be cancelled by id."""
        return sorted({s.job_id for s in self.submissions.values() if s.has_job})
