"""What a task is: a Python call (travels by value with cloudpickle) or a shell command."""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from poolparty.errors import CommandFailed


@dataclass(frozen=True)
class Call:
    """``fn(*args, **kwargs)``; ``fn=None`` means the batch's shared function (one pickle per map)."""

    fn: Callable[..., Any] | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShellCommand:
    """A command run on the node. A string is the user's own shell script, run by ``/bin/sh -c``;
    a sequence is an argv, run without a shell. The result is the exit status (0), anything else
    raises :class:`CommandFailed` in the caller."""

    command: str | Sequence[str]
    cwd: str | None = None

    def run(self) -> int:
        import subprocess  # only shell-command tasks need it: Python tasks start faster without

        argv = ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else list(self.command)
        rc = subprocess.call(argv, cwd=self.cwd)
        if rc != 0:
            shown = self.command if isinstance(self.command, str) else " ".join(self.command)
            raise CommandFailed(rc, shown)
        return rc


Payload = Call | ShellCommand


@dataclass(frozen=True)
class SharedFunction:
    """Stored once per batch: the mapped function and the pool's initializer."""

    fn: Callable[..., Any] | None
    star: bool = False  # starmap: each item is an argument tuple
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()


@dataclass
class ExceptionInfo:
    """A remote exception: the object itself when it pickles, always its type name and traceback."""

    exc: BaseException | None
    type_name: str
    message: str
    traceback: str
    #: where it was raised: in the ``task``, in the pool's ``initializer`` (the standard executors then
    #: call the pool broken) or while pickling the task's ``result`` (``multiprocessing`` then raises
    #: ``MaybeEncodingError``); ``value`` is the repr of that unpicklable result
    stage: str = "task"
    value: str | None = None

    @classmethod
    def capture(cls, exc: BaseException, stage: str = "task", value: str | None = None) -> "ExceptionInfo":
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(exc, f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), tb, stage, value)


def run_payload(item: Any, shared: SharedFunction | None) -> Any:
    """Execute one task on the node."""
    if isinstance(item, ShellCommand):
        return item.run()
    if isinstance(item, Call):
        fn = item.fn if item.fn is not None else (shared.fn if shared else None)
        if fn is None:
            raise RuntimeError("task has no function (internal error)")
        return fn(*item.args, **item.kwargs)
    raise TypeError(f"unknown payload type {type(item).__name__}")


#: the file name cloudpickle gives every code object it pickles
DYNAMIC_CODE = "<dynamic-code>"


def code_with_filename(code: Any, filename: str) -> Any:
    """Unpickling a function's code on the node: its own file name back (see
    :func:`poolparty.engine.by_value.dumps`), for the traceback and the source line of a task's error."""
    return code.replace(co_filename=filename)


def default_python() -> str:
    """The driver's own interpreter, as an absolute path (a PATH shim on the node may be slow or absent)."""
    import sys

    return os.path.abspath(sys.executable)
