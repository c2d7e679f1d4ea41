"""A long task's state across jobs: it ``load``\\ s what an earlier job of it saved, and ``save``\\ s as it goes.

A job gets a warning some time before its walltime (``walltime_signal_lead``). From then on the next
``save(state)`` ends the task right there: the state is kept and the task is continued in the next job,
where ``load()`` returns it. That next job does not count against ``max_resubmissions``. A task that never
saves is run again from its start in the next job (with a longer walltime). Outside a poolparty job
(a plain call, a test) ``load`` returns its default and ``save`` keeps nothing::

    def simulate(n_steps):
        step, total = poolparty.checkpoint.load(default=(0, 0.0))
        while step < n_steps:
            total += expensive(step)
            step += 1
            poolparty.checkpoint.save((step, total))  # after the warning: the task stops here
        return total

The state must pickle (it travels like a result); it is saved whole each time, so keep it small.
"""
from __future__ import annotations

from typing import Any, Protocol


class Continued(BaseException):
    """Raised by :func:`save` once the walltime warning came: it unwinds the task (like ``KeyboardInterrupt``,
    not caught by ``except Exception``) and the worker continues the task in the next job. Do not catch it."""


class TaskCheckpoints(Protocol):
    """What the worker gives this module for the task it runs now."""

    def load(self) -> bytes | None: ...

    def save(self, data: bytes) -> None: ...

    def warned(self) -> bool: ...


_current: TaskCheckpoints | None = None


def bind(task: TaskCheckpoints | None) -> None:
    """Called by the worker around each task (None: no task runs)."""
    global _current
    _current = task


def load(default: Any = None) -> Any:
    """The state this task saved in an earlier job, or ``default`` when it saved none (its first job)."""
    data = _current.load() if _current is not None else None
    if data is None:
        return default
    import pickle

    return pickle.loads(data)


def save(state: Any) -> None:
    """Keep ``state`` as this task's state; after the walltime warning, end the task here (it is continued
    in the next job from this state: see :class:`Continued`)."""
    if _current is None:
        return
    from poolparty.node.worker import dumps

    _current.save(dumps(state))
    if _current.warned():
        raise Continued("walltime warning: the task continues in the next job from its saved state")


def warned() -> bool:
    """Whether this job has had its walltime warning: a task that saves rarely may save now."""
    return _current is not None and _current.warned()
