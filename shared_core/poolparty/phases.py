"""The chunk's life cycle, one vocabulary for the engine, ``poolparty status`` and progress displays.

A chunk is a group of tasks that one array element runs. The scheduler's own view of a job is
:class:`poolparty.queues.states.JobState`; why a job failed is :class:`poolparty.retry.FailureClass`.
"""
from __future__ import annotations

import enum


class ChunkPhase(enum.Enum):
    WAITING = "waiting"  # not submitted yet (or waiting to be resubmitted)
    QUEUED = "queued"  # submitted: pending or running in the scheduler, no result yet
    DONE = "done"  # every task's result is in the store
    FAILED = "failed"  # given up (retry limit, or cancelled): its tasks without a result stay so

    @property
    def finished(self) -> bool:
        return self in (ChunkPhase.DONE, ChunkPhase.FAILED)
