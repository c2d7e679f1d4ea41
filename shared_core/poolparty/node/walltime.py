"""The walltime warning on the node, and the checkpoints a task saves before it.

The scheduler signals a job a lead before its walltime (SLURM ``--signal=B:USR2``, LSF ``-wa USR2``, SGE's
soft limit ``s_rt`` sends SIGUSR1, the local queue SIGUSR2); where it cannot (PBS), the worker's own timer
(``--warn-in``) does. From the warning on, the element claims no more chunks, starts no more tasks, and a
task's next :func:`poolparty.checkpoint.save` ends it (continued in the next job).
"""
from __future__ import annotations

import signal
from pathlib import Path

from poolparty.store.checkpoints import load_state, save_state

#: SIGUSR2: SLURM, LSF, the local queue; SIGUSR1: SGE at ``s_rt``
WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

_warned = False


def install_warning(warn_in: float | None = None) -> None:
    """Catch the warning signals (their default would kill the job) and, with ``warn_in``, start the
    worker's own timer: the warning that many seconds from now."""
    for sig in WARNING_SIGNALS:
        try:
            signal.signal(sig, _on_warning)
        except ValueError:  # not the main thread (a test running a worker in a thread)
            pass
    if warn_in is not None:
        import threading  # only then: a job's start-up imports little

        timer = threading.Timer(max(0.0, warn_in), _on_warning)
        timer.daemon = True
        timer.start()


def _on_warning(*_: object) -> None:
    global _warned
    _warned = True


def walltime_warned() -> bool:
    """Whether this job had its walltime warning."""
    return _warned


class TaskState:
    """One task's checkpoints, as :mod:`poolparty.checkpoint` asks for them while the task runs."""

    def __init__(self, incoming: Path, task: int):
        self.incoming, self.task = incoming, task

    def load(self) -> bytes | None:
        return load_state(self.incoming, self.task)

    def save(self, data: bytes) -> None:
        save_state(self.incoming, self.task, data)

    def warned(self) -> bool:
        return walltime_warned()
