"""The registry of queue names: ``local`` (embedded default), ``slurm``, ``sge``, ``pbs``, ``lsf``, and the adapter class
of each. Cheap to import (the worker on a compute node imports :mod:`poolparty.queues.arrays`): an
adapter module is imported only when its class is asked for."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolparty.queues.base import QueueAdapter
    from poolparty.queues.cli import SchedulerCLI

_ADAPTERS = {
    "local": ("poolparty.queues.local", "LocalQueue"),
    "slurm": ("poolparty.queues.slurm", "SlurmQueue"),
    "sge": ("poolparty.queues.sge", "SgeQueue"),
    "pbs": ("poolparty.queues.pbs", "PbsQueue"),
    "lsf": ("poolparty.queues.lsf", "LsfQueue"),
}
QUEUE_NAMES: tuple[str, ...] = tuple(_ADAPTERS)
#: the queue of a pool that names none
DEFAULT_QUEUE = "local"


def queue_class(name: str) -> "type[QueueAdapter]":
    """The adapter class of a queue name; its class attributes answer scheduler questions without a
    connection (``queue_class(name).runs_on_this_host``). ConfigurationError for an unknown name."""
    try:
        module, cls = _ADAPTERS[name]
    except (KeyError, TypeError):
        from poolparty.errors import ConfigurationError

        raise ConfigurationError(f"queue={name!r} is unknown; choose one of {', '.join(QUEUE_NAMES)}") from None
    return getattr(importlib.import_module(module), cls)


def make_queue(queue: "str | QueueAdapter", cli: "SchedulerCLI") -> "QueueAdapter":
    """The adapter of ``queue`` (a name, or an adapter already made), running commands through ``cli``."""
    from poolparty.queues.base import QueueAdapter

    if isinstance(queue, QueueAdapter):
        return queue
    return queue_class(queue).from_cli(cli)


_LAZY = {"JobState": "poolparty.queues.states", "JobStatus": "poolparty.queues.states",
         "QueueAdapter": "poolparty.queues.base"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'poolparty.queues' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = ["DEFAULT_QUEUE", "JobState", "JobStatus", "QueueAdapter", "QUEUE_NAMES", "make_queue", "queue_class"]
