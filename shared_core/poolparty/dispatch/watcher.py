"""The watcher's verdict on one queued chunk: from its grace timers, the scheduler's view of its job
and the clock, whether to keep waiting or to act. Pure: it returns a new watch record, it calls nothing.

A job that is no longer making progress does not fail at once: a finished job's result may still be
crossing the shared filesystem (``result_grace``), a killed job's almost surely is not
(``killed_result_grace``), and a job missing from the queue may only be between two of its states
(``vanish_grace``). A job the scheduler itself requeues after it ran (preemption, node failure with
requeue, ``scontrol requeue``) is bounded on its own (``RetryPolicy.max_preemptions``), not by
``max_resubmissions``: the job did nothing wrong.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from poolparty.queues.base import QueueAdapter
from poolparty.queues.states import SELF_ENDED, JobState, JobStatus
from poolparty.retry import FailureClass, classify


@dataclass(frozen=True)
class ChunkWatch:
    """What the watcher remembers about a queued chunk's job between two polls."""

    missing_since: float | None = None  # first poll that did not find the job in the queue
    ended_since: float | None = None  # first poll that saw it ended without a result
    ended_state: JobState | None = None  # its last state before it left the queue
    seen_running: bool = False  # so a later PENDING means the scheduler requeued it
    held_reported: bool = False  # a hold is logged once
    scheduler_restarts: int = 0  # requeued by the scheduler itself (node failure with requeue, SGE -r y)

    def regrace(self) -> "ChunkWatch":
        """Another job is watched (the element that claimed the chunk): its grace timers start afresh."""
        return dataclasses.replace(self, missing_since=None, ended_since=None, ended_state=None)

    def next_job(self) -> "ChunkWatch":
        """The chunk's next job starts unseen (its PENDING is no requeue); the restarts still count."""
        return ChunkWatch(scheduler_restarts=self.scheduler_restarts)


@dataclass(frozen=True)
class GraceSettings:
    """How long the watcher waits before it calls a job lost, and how many scheduler restarts a chunk may have."""

    vanish_grace: float
    result_grace: float
    killed_result_grace: float
    max_restarts: int

    @classmethod
    def of(cls, queue: QueueAdapter, max_restarts: int) -> "GraceSettings":
        return cls(queue.vanish_grace, queue.result_grace, queue.killed_result_grace, max_restarts)

    def result_grace_after(self, state: JobState) -> float:
        """A job that ended by itself may still publish; one the scheduler killed had no time to."""
        if state in SELF_ENDED:
            return self.result_grace
        return min(self.killed_result_grace, self.result_grace)


class Action(enum.Enum):
    WAIT = "wait"  # pending, suspended, or inside a grace period: nothing to do yet
    RUNNING = "running"
    HELD = "held"  # held, not reported yet: log it (later polls of the same hold say WAIT)
    GIVE_UP = "give up"  # requeued by the scheduler more often than max_restarts allows
    FAILED = "failed"  # ended (or vanished) without a result: retry or give up by the policy


@dataclass(frozen=True)
class Verdict:
    action: Action
    watch: ChunkWatch  # the record to keep for the next poll
    cancel: bool = False  # the job is still in the queue and must be removed (error state, give-up)
    failure: FailureClass | None = None  # FAILED: why, for the retry policy
    detail: str = ""  # FAILED, GIVE_UP: the scheduler's words, for messages


def judge(watch: ChunkWatch, status: JobStatus | None, now: float, grace: GraceSettings) -> Verdict:
    """The verdict on a chunk's job at ``now``; ``status`` None: the job is not in the queue."""
    if status is not None and status.state.active:
        # back in (or still in) the queue: the timers stop, the state it last ended in is kept
        watch = dataclasses.replace(watch, missing_since=None, ended_since=None)
        return _judge_active(watch, status, grace)
    if status is None:
        since = now if watch.missing_since is None else watch.missing_since
        watch = dataclasses.replace(watch, missing_since=since)
        if now - since < grace.vanish_grace:
            return Verdict(Action.WAIT, watch)
        ended = watch.ended_state
        detail = ended.value if ended else "vanished from the queue"
        return Verdict(Action.FAILED, watch, failure=classify(ended) if ended else FailureClass.VANISHED,
                       detail=detail)
    watch = dataclasses.replace(watch, ended_state=status.state)
    error = status.state is JobState.ERROR  # parked until deleted: no grace, it never publishes
    if not error:
        since = now if watch.ended_since is None else watch.ended_since
        watch = dataclasses.replace(watch, ended_since=since)
        if now - since < grace.result_grace_after(status.state):
            return Verdict(Action.WAIT, watch)
    reason = f" ({status.reason})" if status.reason else ""
    return Verdict(Action.FAILED, watch, cancel=error, failure=classify(status.state),
                   detail=f"{status.state.value}{reason}")


def _judge_active(watch: ChunkWatch, status: JobStatus, grace: GraceSettings) -> Verdict:
    state = status.state
    if state is JobState.RUNNING:
        return Verdict(Action.RUNNING, dataclasses.replace(watch, seen_running=True))
    if watch.seen_running and state in (JobState.PENDING, JobState.REQUEUED):
        # the scheduler requeued it after it ran: bounded on its own, not a resubmission
        restarts = watch.scheduler_restarts + 1
        watch = dataclasses.replace(watch, seen_running=False, scheduler_restarts=restarts)
        if restarts > grace.max_restarts:
            return Verdict(Action.GIVE_UP, watch, cancel=True,
                           detail=f"requeued by the scheduler {restarts} time(s) ({status.reason}); "
                                  f"max_preemptions={grace.max_restarts}")
    if state is JobState.HELD and not watch.held_reported:
        return Verdict(Action.HELD, dataclasses.replace(watch, held_reported=True))
    return Verdict(Action.WAIT, watch)
