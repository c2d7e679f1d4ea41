"""Failure class -> action. Pure functions: tested without any scheduler."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from poolparty.queues.states import JobState
from poolparty.resources import Resources
from poolparty.store.incoming import END_OUT_OF_MEMORY, END_WALLTIME_STOP


class FailureClass(enum.Enum):
    USER_ERROR = "user error"  # the task raised: never resubmitted, the exception goes to the caller
    NODE_FAILURE = "node failure"
    BOOT_FAILURE = "boot failure"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled outside poolparty"
    VANISHED = "vanished from the queue without a result"
    NEVER_STARTED = "job could not start"
    SCHEDULER_ERROR = "scheduler error state"
    OUT_OF_MEMORY = "out of memory"
    TIMEOUT = "walltime exceeded"
    WALLTIME_STOP = "stopped at its walltime warning"  # the worker left the rest (or a task's checkpoint) for the next job
    WORKER_CRASH = "job ended without a result"


class ActionKind(enum.Enum):
    RESUBMIT = "resubmit"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class Decision:
    kind: ActionKind
    resources: Resources
    why: str
    counted: bool = True  # spends one of max_resubmissions (False: one of the failure's own bound)


#: ends that are no fault of the job: the walltime or the scheduler's preemption. They do not spend
#: max_resubmissions; each has its own bound (a RetryPolicy field), so that nothing loops forever.
OWN_BOUNDS = {
    FailureClass.TIMEOUT: "max_walltime_escalations",
    FailureClass.WALLTIME_STOP: "max_continuations",
    FailureClass.PREEMPTED: "max_preemptions",
}


_BY_STATE = {
    JobState.NODE_FAIL: FailureClass.NODE_FAILURE,
    JobState.BOOT_FAIL: FailureClass.BOOT_FAILURE,
    JobState.PREEMPTED: FailureClass.PREEMPTED,
    JobState.CANCELLED: FailureClass.CANCELLED,
    JobState.OUT_OF_MEMORY: FailureClass.OUT_OF_MEMORY,
    JobState.TIMEOUT: FailureClass.TIMEOUT,
    JobState.LAUNCH_FAILED: FailureClass.NEVER_STARTED,
    JobState.ERROR: FailureClass.SCHEDULER_ERROR,
    JobState.COMPLETED: FailureClass.WORKER_CRASH,
    JobState.FAILED: FailureClass.WORKER_CRASH,
}


def classify(state: JobState | None) -> FailureClass:
    """Why a job that is no longer making progress has no result. ``None``: it vanished."""
    if state is None:
        return FailureClass.VANISHED
    return _BY_STATE.get(state, FailureClass.WORKER_CRASH)


#: the scheduler saw these jobs end but not why: the worker's own record of a chunk's end may say it
UNEXPLAINED = frozenset({FailureClass.WORKER_CRASH, FailureClass.VANISHED})
_BY_WORKER_END = {END_OUT_OF_MEMORY: FailureClass.OUT_OF_MEMORY, END_WALLTIME_STOP: FailureClass.WALLTIME_STOP}


def classify_worker_end(failure: FailureClass, end: str | None) -> FailureClass:
    """The class of a lost job once its worker's record of the chunk's end (``end``, from
    :func:`poolparty.store.incoming.recorded_end`) is known: a job that stopped at its address-space
    limit (SGE's h_vmem) or at its walltime warning exits by itself, which its scheduler reports as a
    plain failure (or not at all)."""
    if end is None or failure not in UNEXPLAINED:
        return failure
    return _BY_WORKER_END.get(end, failure)


@dataclass(frozen=True)
class RetryPolicy:
    """How infrastructure failures are retried. Always bounded."""

    max_resubmissions: int = 3
    memory_factor: float = 2.0
    walltime_factor: float = 2.0
    #: used when OOM/TIMEOUT escalates a chunk that asked for no memory/walltime
    base_memory: int = 2 * 1024**3
    base_walltime: int = 3600
    #: killed at its walltime: rerun with walltime_factor times the walltime, at most this often
    max_walltime_escalations: int = 4
    #: stopped at its walltime warning (a task continued from its checkpoint, or the chunk's remaining
    #: tasks): each such job made progress, and the next one gets the same walltime
    max_continuations: int = 100
    #: preempted, or requeued by the scheduler after it started
    max_preemptions: int = 10
    resubmit: frozenset[FailureClass] = frozenset(set(FailureClass) - {FailureClass.USER_ERROR})

    def __post_init__(self) -> None:
        if self.max_resubmissions < 0:
            raise ValueError("max_resubmissions must be >= 0")
        if min(self.max_walltime_escalations, self.max_continuations, self.max_preemptions) < 0:
            raise ValueError("max_walltime_escalations, max_continuations and max_preemptions must be >= 0")
        if self.memory_factor < 1 or self.walltime_factor < 1:
            raise ValueError("escalation factors must be >= 1")

    def decide(self, failure: FailureClass, resubmissions_so_far: int, resources: Resources,
               own_bound_so_far: int = 0) -> Decision:
        """``own_bound_so_far``: how often the chunk already ended by this failure, for those of
        :data:`OWN_BOUNDS` (they are bounded by it, not by ``max_resubmissions``)."""
        if failure not in self.resubmit:
            return Decision(ActionKind.GIVE_UP, resources, f"{failure.value}: not resubmitted by policy")
        if failure in OWN_BOUNDS:
            bound = getattr(self, OWN_BOUNDS[failure])
            if own_bound_so_far >= bound:
                return Decision(ActionKind.GIVE_UP, resources, f"{failure.value} {own_bound_so_far} time(s) "
                                f"already ({OWN_BOUNDS[failure]}={bound})", counted=False)
        elif resubmissions_so_far >= self.max_resubmissions:
            return Decision(ActionKind.GIVE_UP, resources,
                            f"{failure.value}; resubmitted {resubmissions_so_far} time(s) already "
                            f"(max_resubmissions={self.max_resubmissions})")
        new = resources
        why = failure.value
        if failure is FailureClass.OUT_OF_MEMORY:
            mem = int((resources.memory or self.base_memory) * self.memory_factor)
            new = dataclasses.replace(resources, memory=mem)
            why += f"; memory raised to {mem // 1024**2} MiB"
        elif failure is FailureClass.TIMEOUT:
            wall = int((resources.walltime or self.base_walltime) * self.walltime_factor)
            new = dataclasses.replace(resources, walltime=wall)
            why += f"; walltime raised to {wall} s"
        return Decision(ActionKind.RESUBMIT, new, why, counted=failure not in OWN_BOUNDS)
