"""poolparty: fair-share dispatch of Python calls and shell commands to SLURM, SGE or local processes.

``Pool`` is a drop-in for ``multiprocessing.Pool``, ``Executor`` a ``concurrent.futures.Executor``.
Names are imported lazily so that the worker on a compute node imports only what it needs.
"""
from __future__ import annotations

from typing import Any

from poolparty import _version

__version__ = _version.__version__

_EXPORTS = {
    "Pool": ("poolparty.api.pool", "Pool"),
    "AsyncResult": ("poolparty.api.pool", "AsyncResult"),
    "Executor": ("poolparty.api.executor", "Executor"),
    "Engine": ("poolparty.engine", "Engine"),
    "EngineOptions": ("poolparty.engine", "EngineOptions"),
    "Resources": ("poolparty.resources", "Resources"),
    "RetryPolicy": ("poolparty.retry", "RetryPolicy"),
    "FailureClass": ("poolparty.retry", "FailureClass"),
    "Call": ("poolparty.payload", "Call"),
    "ShellCommand": ("poolparty.payload", "ShellCommand"),
    "JobState": ("poolparty.queues.states", "JobState"),
}
_ERRORS = ("PoolPartyError", "ConfigurationError", "UnknownResourceError", "UnsupportedResourceError",
           "UnsafeWorkDirError", "WorkDirInUseError", "WorkDirMismatchError", "CorruptWorkDirError", "SchedulerCommandError",
           "SubmissionError", "RetryLimitExceeded", "RemoteTraceback", "RemoteError", "CommandFailed",
           "PoolClosedError")
_EXPORTS.update({name: ("poolparty.errors", name) for name in _ERRORS})

__all__ = sorted(_EXPORTS)


#: submodules users reach as attributes (``poolparty.checkpoint.save(state)`` in a task)
_SUBMODULES = ("checkpoint",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"poolparty.{name}")
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'poolparty' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
