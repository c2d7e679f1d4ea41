"""In-memory state of one batch (one map) while the dispatcher drives it."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from poolparty.store.inputs import BatchFiles
from poolparty.engine.handle import BatchHandle
from poolparty.store.journal import Journal
from poolparty.queues.states import JobState
from poolparty.resources import Resources
from poolparty.store.results import ResultStore


class Phase(enum.Enum):
    WAITING = "waiting"  # to be submitted
    QUEUED = "queued"  # submitted; pending or running in the scheduler
    DONE = "done"
    FAILED = "failed"  # gave up


@dataclass
class ChunkRun:
    chunk: int
    tasks: list[int]
    resources: Resources
    phase: Phase = Phase.WAITING
    resubmissions: int = 0
    sub: int | None = None
    element: str | None = None
    submission: "Submission | None" = None
    missing_since: float | None = None
    ended_since: float | None = None
    ended_state: JobState | None = None
    held_reported: bool = False
    seen_running: bool = False
    scheduler_restarts: int = 0  # requeued by the scheduler itself (node failure with requeue, SGE -r y)
    last_failure: str | None = None
    runner: str | None = None  # the element running this chunk when it is not the chunk's own (a claim)


@dataclass
class Submission:
    """One scheduler submission (an array, or one plain job): the unit of the running limit."""

    sub: int
    job_id: str
    throttle: int
    unfinished: set[int] = field(default_factory=set)  # chunks
    claimed: bool = False  # some chunk ran in another chunk's element: its own elements are left over

    @property
    def reserved(self) -> int:
        return min(self.throttle, len(self.unfinished))


@dataclass
class Batch:
    number: int
    files: BatchFiles
    handle: BatchHandle
    chunks: list[ChunkRun]
    store: ResultStore
    journal: Journal
    next_sub: int = 0
    user_errors: int = 0
    give_up_policy: str = "cancel_pool"  # or "fail_batch"
    seen_parts: set[str] = field(default_factory=set)  # c<chunk>.s<sub> whose runner has been read

    @property
    def finished(self) -> bool:
        return all(c.phase in (Phase.DONE, Phase.FAILED) for c in self.chunks)
