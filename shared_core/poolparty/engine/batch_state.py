"""In-memory state of one batch (one map) while the dispatcher drives it; a chunk's phase changes only
through the named transitions of :class:`ChunkRun`."""
from __future__ import annotations

from dataclasses import dataclass, field

from poolparty.dispatch.watcher import ChunkWatch
from poolparty.engine.handle import BatchSink
from poolparty.phases import ChunkPhase
from poolparty.resources import Resources
from poolparty.retry import FailureClass
from poolparty.store.inputs import BatchFiles
from poolparty.store.journal import Journal
from poolparty.store.results import ResultStore


@dataclass
class Submission:
    """One scheduler submission (an array, or one plain job): the unit of the running limit."""

    sub: int
    job_id: str
    throttle: int
    unfinished: set[int] = field(default_factory=set)  # chunks
    claimed: bool = False  # some chunk ran in another chunk's element: its own elements are left over
    offered: bool = False  # chunks offered to warm elements of earlier submissions: no job of its own

    @property
    def reserved(self) -> int:
        return min(self.throttle, len(self.unfinished))

    @property
    def adopted_unknown(self) -> bool:
        """Adopted from a journal that did not name its job id: it cannot be throttled or cancelled by id."""
        return self.job_id.startswith("?")

    @property
    def has_job(self) -> bool:
        """A scheduler job of its own that can be throttled or cancelled by id."""
        return not self.adopted_unknown and not self.offered


@dataclass
class ChunkRun:
    """One chunk of a batch: its phase, the job it is queued as, and what the watcher remembers."""

    chunk: int
    tasks: list[int]
    resources: Resources
    phase: ChunkPhase = ChunkPhase.WAITING
    resubmissions: int = 0
    own_bound_ends: dict[FailureClass, int] = field(default_factory=dict)  # walltime, preemption: not resubmissions
    sub: int | None = None
    element: str | None = None
    submission: Submission | None = None
    watch: ChunkWatch = field(default_factory=ChunkWatch)
    last_failure: str | None = None
    runner: str | None = None  # the element running this chunk when it is not the chunk's own (a claim)

    # -- transitions ---------------------------------------------------------------------------
    def submitted(self, sub: int, element: str, submission: Submission) -> None:
        """Queued as ``element`` of submission ``sub`` (by this driver, or adopted from the journal)."""
        self.phase, self.sub, self.element, self.submission = ChunkPhase.QUEUED, sub, element, submission
        submission.unfinished.add(self.chunk)

    def detach(self) -> Submission | None:
        """Leave its submission (it no longer holds a running slot there); returns the submission left."""
        s, self.submission = self.submission, None
        if s is not None:
            s.unfinished.discard(self.chunk)
        return s

    def mark_done(self) -> Submission | None:
        """Every task's result is stored; returns the submission it left, if any."""
        self.phase = ChunkPhase.DONE
        return self.detach()

    def offered(self, sub: int, submission: Submission) -> None:
        """Offered to warm elements as submission ``sub`` (no element of its own): watched once one claims it."""
        self.phase, self.sub, self.element, self.submission = ChunkPhase.QUEUED, sub, None, submission
        submission.unfinished.add(self.chunk)

    def withdrawn(self) -> None:
        """Not claimed by a warm element in time: it waits to be submitted (no resubmission: it never ran)."""
        self.detach()
        self.phase, self.sub = ChunkPhase.WAITING, None

    def job_lost(self, detail: str) -> None:
        """Its job ended (or vanished) without the chunk's result: the next job starts unwatched."""
        self.last_failure = detail
        self.detach()
        self.watch = self.watch.next_job()
        self.runner = None

    def retry_with(self, resources: Resources, own_bound: FailureClass | None = None) -> None:
        """Waits to be submitted again, with ``resources`` (escalated by the retry policy); ``own_bound``:
        the end it counts as, instead of a resubmission (a walltime end, a preemption)."""
        self.resources = resources
        if own_bound is None:
            self.resubmissions += 1
        else:
            self.own_bound_ends[own_bound] = self.own_bound_ends.get(own_bound, 0) + 1
        self.phase = ChunkPhase.WAITING

    def give_up(self, why: str) -> None:
        """Not run again (retry limit, or cancelled): its tasks without a result stay so."""
        self.detach()
        self.phase = ChunkPhase.FAILED
        self.last_failure = why

    def restore(self, resources: Resources | None, resubmissions: int) -> None:
        """What the journal says of its earlier jobs (resume)."""
        self.resources = resources or self.resources
        self.resubmissions = resubmissions

    def ran_as(self, sub: int | None, element: str | None) -> None:
        """A stored chunk's job, from the journal: its element may be running other chunks (claims)."""
        self.sub, self.element = sub, element

    # -- claims ----------------------------------------------------------------------------------
    def claimed_by(self, runner: str) -> None:
        """Another element of its submission runs it: its own element is left over."""
        self.runner = runner
        if self.submission is not None:
            self.submission.claimed = True

    def watch_runner(self, runner: str) -> None:
        """Its job ended, but ``runner`` holds it: watch that element instead, from a fresh grace."""
        self.runner = runner
        self.watch = self.watch.regrace()

    @property
    def watched(self) -> str | None:
        """The element whose state tells whether this chunk is still making progress."""
        return self.runner or self.element


@dataclass
class Batch:
    number: int
    files: BatchFiles
    handle: BatchSink
    chunks: list[ChunkRun]
    store: ResultStore
    journal: Journal
    next_sub: int = 0
    user_errors: int = 0
    give_up_policy: str = "cancel_pool"  # or "fail_batch"
    seen_parts: set[tuple[int, int]] = field(default_factory=set)  # (chunk, sub) of part files whose runner was read

    @property
    def finished(self) -> bool:
        return all(c.phase.finished for c in self.chunks)

    def take_sub(self) -> int:
        """The next submission number of this batch (part names and the journal key on it)."""
        self.next_sub += 1
        return self.next_sub - 1
