"""Single calls (``Pool.apply_async``, ``Executor.submit``): each is a ``concurrent.futures.Future``
settled with its task's outcome; calls made close together leave as one array (:mod:`.batching`)."""
from __future__ import annotations

import weakref
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Sequence

import cloudpickle

from poolparty.api.batching import BatchingWindow, Placement
from poolparty.engine.by_value import register_local_modules
from poolparty.payload import Call, Payload, SharedFunction
from poolparty.resources import Resources

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine

#: what a way in makes of a task's exception before its caller sees it (an Executor: BrokenProcessPool)
Translate = Callable[[BaseException], BaseException]


def pickling_error(item: Any, what: str) -> BaseException | None:
    """The pickler's own exception (``TypeError``, ``PicklingError``, whatever a ``__reduce__`` raised)
    if ``item`` cannot travel, as ``multiprocessing`` and ``concurrent.futures`` report it; else None."""
    try:
        cloudpickle.dumps(item)
    except Exception as e:
        e.add_note(f"(poolparty: cannot pickle {what}; it travels to the compute node with cloudpickle: "
                   "pass data, not open files, locks or connections)")
        return e
    return None


#: a burst of calls is held at most this many batching windows before it leaves
CALL_BURST_WINDOWS = 10
#: chunks per running slot a burst of calls is packed into (a burst of 2 calls per slot stays 1 per job)
CALL_CHUNKS_PER_SLOT = 16


class SingleCalls:
    """The single calls of one pool: ``submit`` returns a Future at once; the window submits. The
    pool's ``initializer`` travels once per batch and runs once per job, before its first call."""

    def __init__(self, engine: "Engine", window: float, give_up_policy: str = "cancel_pool", *,
                 initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (),
                 translate: Translate | None = None):
        self._sink = _FutureOutcomes(translate)
        # a burst of calls (submit in a loop) leaves as one array once the calls pause, packed a few
        # chunks per running slot: each chunk costs a file round trip and a job (api/batching.py)
        self._window: BatchingWindow[Future[Any]] = BatchingWindow(
            engine, self._sink, window=window, kind="calls", give_up_policy=give_up_policy,
            shared=SharedFunction(None, initializer=initializer, initargs=initargs) if initializer else None,
            quiet=True, max_hold=window * CALL_BURST_WINDOWS, tasks_per_job=None,
            chunks_per_slot=CALL_CHUNKS_PER_SLOT)
        self._checked: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()  # functions that pickle

    def submit(self, payload: Payload, resources: Resources) -> Future[Any]:
        """A Future for the call; one whose function or arguments cannot be pickled holds that error."""
        fut: Future[Any] = Future()
        if isinstance(payload, Call):
            register_local_modules([payload.fn, *payload.args, *payload.kwargs.values()])
            error = self._pickling_error(payload)
            if error is not None:
                fut.set_exception(error)
                return fut
        self._window.add(fut, payload, resources)
        return fut

    def _pickling_error(self, call: Call) -> BaseException | None:
        """A function sent by value costs ~0.5 ms to pickle: checked once per pool (submit in a loop),
        then only the arguments are; the batch pickles everything again anyway."""
        what = f"the call {getattr(call.fn, '__qualname__', call.fn)!r}"
        try:
            known = call.fn in self._checked
        except TypeError:  # not weakly referable or not hashable: check it each time
            known = False
        if known:
            return pickling_error((call.args, call.kwargs), what)
        error = pickling_error(call, what)
        if error is None:
            try:
                self._checked[call.fn] = True
            except TypeError:
                pass
        return error

    def flush(self) -> None:
        """Submit the calls still in the window now (close, terminate, shutdown)."""
        self._window.flush()


class _FutureOutcomes:
    """Each outcome settles its call's Future (unpickled on the engine's thread, as soon as it arrives)."""

    def __init__(self, translate: Translate | None):
        self._translate = translate

    def submitted(self, placed: Sequence[tuple[Future[Any], Placement]]) -> None:
        pass

    def dropped(self, fut: Future[Any]) -> bool:
        """Cancelled while still in the batching window: never submitted (``set_running_or_notify_cancel``
        wakes its waiters, as the standard executors do for a cancelled call they skip)."""
        return fut.cancelled() and not fut.set_running_or_notify_cancel()

    def started(self, fut: Future[Any], where: Placement) -> None:
        """A job runs the call: RUNNING, so ``cancel()`` says False, as for a call a worker has taken."""
        if fut.running() or fut.done():  # a resubmitted chunk starts again
            return
        try:
            fut.set_running_or_notify_cancel()  # False when cancelled: its result will be dropped
        except RuntimeError:  # settled meanwhile
            pass

    def arrived(self, fut: Future[Any], where: Placement) -> None:
        try:
            good, value = where.handle.outcome(where.task)
        except BaseException as e:  # the result does not unpickle on the driver
            good, value = False, e
        if not good and self._translate is not None:
            value = self._translate(value)
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
