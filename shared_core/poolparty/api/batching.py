"""Single calls (``Executor.submit``, ``Pool.apply_async``) made close together leave as one array:
the first call opens a short window, and everything submitted within it is one batch."""
from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import cloudpickle

from poolparty.engine.by_value import register_local_modules
from poolparty.engine.handle import BatchHandle
from poolparty.errors import ConfigurationError
from poolparty.payload import Call, Payload
from poolparty.resources import Resources

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine


def check_picklable(item: Any, what: str) -> None:
    try:
        cloudpickle.dumps(item)
    except Exception as e:
        raise ConfigurationError(f"cannot pickle {what}: {e}. It travels to the compute node with "
                                 "cloudpickle; pass data, not open files, locks or connections.") from e


class CallCoalescer:
    def __init__(self, engine: "Engine", window: float, give_up_policy: str = "cancel_pool"):
        self.engine = engine
        self.window = window
        self.give_up_policy = give_up_policy
        self._lock = threading.Lock()
        self._pending: list[tuple[Payload, Resources, Future[Any]]] = []
        self._timer: threading.Timer | None = None

    def submit(self, payload: Payload, resources: Resources) -> Future[Any]:
        if isinstance(payload, Call):
            register_local_modules([payload.fn, *payload.args, *payload.kwargs.values()])
            check_picklable(payload, f"the call {getattr(payload.fn, '__qualname__', payload.fn)!r}")
        fut: Future[Any] = Future()
        with self._lock:
            self._pending.append((payload, resources, fut))
            if self._timer is None:
                self._timer = threading.Timer(self.window, self.flush)
                self._timer.daemon = True
                self._timer.start()
        return fut

    def flush(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
        groups: dict[Resources, list[tuple[Payload, Future[Any]]]] = defaultdict(list)
        for payload, resources, fut in items:
            groups[resources].append((payload, fut))
        for resources, members in groups.items():
            futures = [f for _, f in members]
            try:
                handle = self.engine.submit(None, [[(i, p)] for i, (p, _) in enumerate(members)], resources,
                                            kind="calls", give_up_policy=self.give_up_policy)
            except BaseException as e:
                for f in futures:
                    _settle(f, error=e)
                continue
            _link(handle, futures)


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


def _link(handle: BatchHandle, futures: list[Future[Any]]) -> None:
    def on_task(task: int, ok: bool, payload: bytes) -> None:
        try:
            good, value = handle.outcome(task)
        except BaseException as e:  # the result does not unpickle on the driver
            good, value = False, e
        _settle(futures[task], value=value if good else None, error=None if good else value)

    def on_done(h: BatchHandle) -> None:
        for f in futures:
            _settle(f, error=h.error or RuntimeError(f"{h.label} ended without this task's result"))

    handle.add_task_callback(on_task)
    handle.add_done_callback(on_done)
