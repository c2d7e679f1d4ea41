"""Single calls (``Pool.apply_async``, ``Executor.submit``): each is a ``concurrent.futures.Future``
settled with its task's outcome; calls made close together leave as one array (:mod:`.batching`)."""
from __future__ import annotations

import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Sequence

import cloudpickle

from poolparty.api.batching import BatchingWindow, Placement
from poolparty.engine.by_value import register_local_modules
from poolparty.errors import ConfigurationError
from poolparty.payload import Call, Payload
from poolparty.resources import Resources

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine


def check_picklable(item: Any, what: str) -> None:
    """Fail in the caller's own line, not later on a thread, when an argument cannot travel."""
    try:
        cloudpickle.dumps(item)
    except Exception as e:
        raise ConfigurationError(f"cannot pickle {what}: {e}. It travels to the compute node with "
                                 "cloudpickle; pass data, not open files, locks or connections.") from e


#: a burst of calls is held at most this many batching windows before it leaves
CALL_BURST_WINDOWS = 10
#: chunks per running slot a burst of calls is packed into (a burst of 2 calls per slot stays 1 per job)
CALL_CHUNKS_PER_SLOT = 16


class SingleCalls:
    """The single calls of one pool: ``submit`` returns a Future at once; the window submits."""

    def __init__(self, engine: "Engine", window: float, give_up_policy: str = "cancel_pool"):
        # a burst of calls (submit in a loop) leaves as one array once the calls pause, packed a few
        # chunks per running slot: each chunk costs a file round trip and a job (api/batching.py)
        self._window: BatchingWindow[Future[Any]] = BatchingWindow(
            engine, _FutureOutcomes(), window=window, kind="calls", give_up_policy=give_up_policy,
            quiet=True, max_hold=window * CALL_BURST_WINDOWS, tasks_per_job=None,
            chunks_per_slot=CALL_CHUNKS_PER_SLOT)
        self._checked: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()  # functions that pickle

    def submit(self, payload: Payload, resources: Resources) -> Future[Any]:
        if isinstance(payload, Call):
            register_local_modules([payload.fn, *payload.args, *payload.kwargs.values()])
            self._check(payload)
        fut: Future[Any] = Future()
        self._window.add(fut, payload, resources)
        return fut

    def _check(self, call: Call) -> None:
        """A function sent by value costs ~0.5 ms to pickle: checked once per pool (submit in a loop),
        then only the arguments are; the batch pickles everything again anyway."""
        what = f"the call {getattr(call.fn, '__qualname__', call.fn)!r}"
        try:
            known = call.fn in self._checked
        except TypeError:  # not weakly referable or not hashable: check it each time
            known = False
        if not known:
            check_picklable(call, what)
            try:
                self._checked[call.fn] = True
            except TypeError:
                pass
        else:
            check_picklable((call.args, call.kwargs), what)

    def flush(self) -> None:
        """Submit the calls still in the window now (close, terminate, shutdown)."""
        self._window.flush()


class _FutureOutcomes:
    """Each outcome settles its call's Future (unpickled on the engine's thread, as soon as it arrives)."""

    def submitted(self, placed: Sequence[tuple[Future[Any], Placement]]) -> None:
        pass

    def arrived(self, fut: Future[Any], where: Placement) -> None:
        try:
            good, value = where.handle.outcome(where.task)
        except BaseException as e:  # the result does not unpickle on the driver
            good, value = False, e
        _settle(fut, value=value if good else None, error=None if good else value)

    def failed(self, fut: Future[Any], where: Placement, error: BaseException) -> None:
        _settle(fut, error=error)

    def refused(self, fut: Future[Any], error: BaseException) -> None:
        _settle(fut, error=error)


def _settle(fut: Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    if fut.done():
        return
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
    except Exception:  # cancelled by the caller meanwhile
        pass
