"""The adapter interface: submit arrays, query the pool's jobs in one call, cancel. Raw scheduler
states are mapped onto one :class:`JobState` enum; nothing outside an adapter sees raw states."""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from poolparty.resources import Resources
from poolparty.store.layout import job_log_name


class JobState(enum.Enum):
    PENDING = "pending"
    HELD = "held"  # by a user or an admin: waited on, never an error
    RUNNING = "running"
    SUSPENDED = "suspended"
    REQUEUED = "requeued"  # the scheduler itself will run it again
    COMPLETED = "completed"
    FAILED = "failed"  # non-zero exit of the job script
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    BOOT_FAIL = "boot_fail"
    LAUNCH_FAILED = "launch_failed"  # never started (bad output path, SLURM JobLaunchFailure)
    ERROR = "error"  # parked in an error state that needs deleting (SGE Eqw)

    @property
    def active(self) -> bool:
        """Still in the queue and expected to make progress by itself."""
        return self in _ACTIVE


_ACTIVE = {JobState.PENDING, JobState.HELD, JobState.RUNNING, JobState.SUSPENDED, JobState.REQUEUED}
#: ended by the job itself: a missing result may still be on its way through the filesystem
SELF_ENDED = frozenset({JobState.COMPLETED, JobState.FAILED})


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    reason: str = ""  # the scheduler's own words, for messages


@dataclass(frozen=True)
class ArrayPart:
    """One scheduler submission's worth of chunks: chunk = offset + index."""

    offset: int
    indices: tuple[int, ...]

    @property
    def chunks(self) -> list[int]:
        return [self.offset + i for i in self.indices]


def layout_array(chunks: Sequence[int], *, first_index: int, max_index: int | None,
                 contiguous: bool = False) -> list[ArrayPart]:
    """Split chunk ids into submissions whose array indices fit ``first_index..max_index``.

    Chunks are grouped in windows of the allowed index width (``offset`` = window start shifted by
    ``first_index``), so a resubmission of scattered chunks needs no extra file per submission.
    ``contiguous`` splits further into runs of consecutive indices (SGE ``-t`` takes only ranges).
    """
    if not chunks:
        return []
    width = None if max_index is None else max_index - first_index + 1
    groups: dict[int, list[int]] = {}
    for c in sorted(set(chunks)):
        window = 0 if width is None else c // width
        groups.setdefault(window, []).append(c)
    parts: list[ArrayPart] = []
    for window, members in sorted(groups.items()):
        offset = (0 if width is None else window * width) - first_index
        indices = [c - offset for c in members]
        if not contiguous:
            parts.append(ArrayPart(offset, tuple(indices)))
            continue
        run = [indices[0]]
        for i in indices[1:]:
            if i == run[-1] + 1:
                run.append(i)
            else:
                parts.append(ArrayPart(offset, tuple(run)))
                run = [i]
        parts.append(ArrayPart(offset, tuple(run)))
    return parts


def compress_indices(indices: Sequence[int]) -> str:
    """``[0,1,2,5,7,8]`` -> ``"0-2,5,7-8"`` (SLURM ``--array`` syntax)."""
    out: list[str] = []
    items = sorted(indices)
    start = prev = items[0]
    for i in items[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


@dataclass(frozen=True)
class ArrayRequest:
    """Everything an adapter needs to submit one array (or, in plain mode, one job per index)."""

    name: str  # the pool's job name: one status query by name covers the whole pool
    part: ArrayPart
    throttle: int  # max elements running at once (SLURM %N, SGE -tc)
    resources: Resources
    script: Path  # the fixed job.sh
    worker_argv: tuple[str, ...]  # without --offset/--index-env/--chunk: the adapter adds them
    workdir: Path  # cwd of the job
    log_dir: Path


@dataclass
class Submitted:
    """What a submission returned: element id per chunk, as the status query will report it."""

    job_id: str  # what to cancel to remove the whole submission
    elements: dict[int, str] = field(default_factory=dict)  # chunk -> element id


class QueueAdapter(abc.ABC):
    """One scheduler. Subclasses are short: they render arguments and parse outputs, nothing else."""

    name: str = "?"
    #: the environment variable holding the array index inside a job, and the lowest index allowed
    index_env: str = ""
    first_index: int = 0
    #: SGE ``-t`` takes one range per submission
    contiguous_arrays: bool = False
    #: seconds a job that ended by itself (completed, failed) may take to show its result file (shared
    #: filesystem latency)
    result_grace: float = 10.0
    #: the same for a job the scheduler ended (cancelled, killed for memory or walltime, node failure,
    #: preemption): its worker almost surely had no time to publish, so waiting long only delays the
    #: resubmission; if a result does land later, the new job skips its tasks and the duplicate is dropped
    killed_result_grace: float = 2.0
    #: seconds a job may be missing from the queue before it counts as vanished
    vanish_grace: float = 30.0
    #: fastest sensible status-poll interval
    min_poll_interval: float = 1.0
    #: upper bound of the adaptive status-poll interval when the user sets none
    default_polling_interval: float = 30.0
    #: how often the dispatcher lists the work_dir for finished chunks (no scheduler call)
    result_check_interval: float = 0.25
    #: how long a single call (``Executor.submit``) waits for more to share its array
    batching_window: float = 0.5
    #: jobs run as processes of this machine (no shared filesystem, no scheduler between us and them)
    runs_on_this_host: bool = False

    def default_max_running(self) -> int:
        """Elements running at once when the user sets no ``max_running``."""
        return 100

    def default_work_root(self) -> Path:
        """Where fresh run directories go by default: the nodes must see it, and the working directory
        usually is shared."""
        return Path.cwd() / ".poolparty"

    def attach(self, run_dir: Path) -> None:
        """Called once with the pool's run directory (the local queue keeps its state there)."""

    @abc.abstractmethod
    def max_array_index(self) -> int | None:
        """Highest array index the scheduler accepts, or None if unlimited."""

    @abc.abstractmethod
    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        """Submit one array (``array=True``) or one plain job per chunk. Raises SubmissionError."""

    @abc.abstractmethod
    def query(self, name: str) -> dict[str, JobStatus]:
        """States of every job of the pool (by job name), in ONE scheduler call. Keys: element ids."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        """Cancel these jobs/elements (and, with ``name``, any other job of the pool) in one call."""

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        """Change an array's running limit; False where the scheduler cannot."""
        return False

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        """Raise :class:`~poolparty.errors.ImpossibleResourceError` if the scheduler says a job with
        these resources could never start. Asks without submitting anything; nothing to ask by default."""

    def log_path(self, log_dir: Path, element: str) -> Path:
        """Where the scheduler writes an element's stdout and stderr."""
        return log_dir / job_log_name(element)

    def close(self) -> None:
        """Release resources (the local queue stops its launcher)."""
