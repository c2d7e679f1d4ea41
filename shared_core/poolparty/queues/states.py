"""The one vocabulary of a scheduler job's life cycle: every adapter translates its raw states into
:class:`JobState` at its door, and nothing outside an adapter ever sees a raw state."""
from __future__ import annotations

import enum
from dataclasses import dataclass


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
