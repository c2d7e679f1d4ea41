"""``poolparty.Executor``: a real ``concurrent.futures.Executor`` whose calls run as cluster jobs."""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Mapping

from poolparty.engine.by_value import register_local_modules
from poolparty.api.calls import SingleCalls
from poolparty.api.streaming import MapStream, default_chunksize, is_sized
from poolparty.engine.handle import BatchHandle
from poolparty.engine.engine import Engine
from poolparty.engine import lifecycle
from poolparty.errors import PoolClosedError, RemoteTraceback
from poolparty.payload import Call, SharedFunction
from poolparty.api.progress import ProgressBar, wanted as progress_wanted
from poolparty.resources import Resources
from poolparty.api.options import build_engine_options


class Executor(cf.Executor):
    """``submit`` returns a ``concurrent.futures.Future``; calls submitted close together leave as one
    array. ``max_workers`` caps the jobs running at once (alias of ``max_running``)."""

    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (), *,
                 max_tasks_per_child: int | None = None, **options: Any):
        """As ``ProcessPoolExecutor``: ``initializer(*initargs)`` runs once in each job before its first
        call; if it raises, the executor is broken (``BrokenProcessPool``). ``mp_context`` is accepted
        and unused, and so is ``max_tasks_per_child``: each job is a fresh process already."""
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._engine = Engine(build_engine_options(max_workers, options))
        self._work_dir = self._engine.work_dir  # still known after shutdown: a failed run's dir is kept
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._broken: str | None = None
        me = weakref.ref(self)  # the calls must not keep the executor alive (its finalizer cancels)

        def translate(error: BaseException) -> BaseException:
            executor = me()
            return error if executor is None else executor._initializer_failed(error)

        self._calls = SingleCalls(self._engine, self._engine.queue.batching_window, initializer=initializer,
                                  initargs=self._initargs, translate=translate)
        lifecycle.flush_at_exit(self._calls.flush)
        # a bar for long ``map`` calls, as Pool has (on a terminal, or progress=True)
        self._progress = ProgressBar(self._engine.progress, f"poolparty {self._engine.name}") \
            if progress_wanted(self._engine.options.progress) else None
        self._engine.report_efficiency = self._progress is not None  # its last line summarises the report
        weakref.finalize(self, self._engine.terminate, "executor garbage-collected").atexit = False
        self._shutdown = False
        self._futures: "set[cf.Future[Any]]" = set()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def work_dir(self) -> Any:
        return self._work_dir

    def _resources(self, resources: Mapping[str, Any] | None) -> Resources:
        base = self._engine.options.resources
        return Resources.from_mapping(resources, base=base) if resources else base

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "cf.Future[Any]":
        return self.submit_with(fn, args, kwargs)

    def submit_with(self, fn: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None,
                    *, resources: Mapping[str, Any] | None = None) -> "cf.Future[Any]":
        """``submit`` with per-call resources, e.g. ``resources={'memory': '8GB'}``."""
        self._check_open()
        fut = self._calls.submit(Call(fn, tuple(args), dict(kwargs or {})), self._resources(resources))
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, resources: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Results in order, lazily; the inputs are read lazily too (sequences leave as one array, other
        iterables a window at a time: :mod:`poolparty.api.streaming`). ``timeout`` counts from this call,
        as in the standard library; closing the iterator cancels what has not run."""
        self._check_open()
        end = None if timeout is None else time.monotonic() + timeout
        sized = all(is_sized(it) for it in iterables)
        inputs: Iterable[Any] = list(zip(*iterables)) if sized else zip(*iterables)
        if chunksize is None:
            chunksize = default_chunksize(len(inputs) if sized else None, self._engine.max_running)  # type: ignore[arg-type]
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        register_local_modules([fn])
        shared, res = self._shared(fn), self._resources(resources)

        def submit(chunks: list[list[tuple[int, Any]]]) -> BatchHandle:
            calls = [[(i, Call(None, args)) for i, args in chunk] for chunk in chunks]
            handle = self._engine.submit(shared, calls, res)
            if self._progress is not None:
                self._progress.track(handle)
            return handle

        stream = MapStream(submit, inputs, chunksize=chunksize, max_running=self._engine.max_running,
                           ordered=True)
        self.__dict__.setdefault("_map_streams", weakref.WeakSet()).add(stream)
        return self._map_results(stream, end)

    def _map_results(self, stream: MapStream, end: float | None) -> Iterator[Any]:
        """Yields each value without keeping it (the standard library pops its futures, too)."""
        try:
            while True:
                try:
                    yield _value_or_raise(stream.next(None if end is None else end - time.monotonic()))
                except StopIteration:
                    return
                except TimeoutError:
                    raise cf.TimeoutError() from None
                except KeyboardInterrupt:
                    self._engine.terminate("KeyboardInterrupt")
                    raise
        finally:  # as the standard library: a timed-out, failed or abandoned map cancels what is left
            for handle in stream.stop():
                self._engine.cancel(handle)

    def _feed_maps(self, wait: bool) -> None:
        """At shutdown: every map's remaining inputs are read and submitted (``wait``: before returning)."""
        for stream in list(self.__dict__.get("_map_streams", ())):
            stream.drain()
            if wait:
                stream.wait_fed()

    def _check_open(self) -> None:
        """As ``concurrent.futures``: a RuntimeError once shut down, broken, or the interpreter exits."""
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        if self._shutdown:
            raise PoolClosedError("cannot schedule new futures after shutdown")
        if lifecycle.interpreter_exiting():  # the standard library's very type and words (atexit handlers)
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def _shared(self, fn: Callable[..., Any]) -> SharedFunction:
        """A map's function with the executor's initializer: one pickle per batch, one run per job."""
        return SharedFunction(fn, initializer=self._initializer, initargs=self._initargs)

    def _initializer_failed(self, error: BaseException) -> BaseException:
        """A call's error, on the engine's thread: an initializer that raised breaks the executor (as
        ``ProcessPoolExecutor``: every pending future and every later submit get BrokenProcessPool)."""
        cause = error.__cause__
        if not isinstance(cause, RemoteTraceback) or cause.stage != "initializer":
            return error
        broken = BrokenProcessPool(
            f"an initializer raised on a compute node ({type(error).__name__}: {error}): the executor is not "
            "usable anymore; fix the initializer and create a new one")
        broken.__cause__ = error
        if self._broken is None:
            self._broken = str(broken)
            threading.Thread(target=self._break, args=(broken,), name="poolparty-broken", daemon=True).start()
        return broken

    def _break(self, broken: BaseException) -> None:
        for f in list(self._futures):
            if not f.done():
                try:
                    f.set_exception(broken)
                except Exception:  # settled meanwhile
                    pass
        self._terminate("initializer failed")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        self._calls.flush()
        if not cancel_futures:
            try:
                self._feed_maps(wait)
            except KeyboardInterrupt:
                self._terminate("KeyboardInterrupt")
                raise
        if cancel_futures:
            for f in list(self._futures):
                f.cancel()
            self._terminate("shutdown(cancel_futures=True)")
            return
        if wait:
            try:
                self._engine.close()
            except KeyboardInterrupt:
                self._terminate("KeyboardInterrupt")
                raise
            if self._progress is not None:
                self._progress.stop()  # draws the final state of a bar on screen
        else:
            threading.Thread(target=self._engine.close, daemon=True).start()

    def _terminate(self, reason: str) -> None:
        self._engine.terminate(reason)
        if self._progress is not None:
            self._progress.stop()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is not None and issubclass(exc_type, BaseException) and not issubclass(exc_type, GeneratorExit):
            self._shutdown = True
            self._terminate(exc_type.__name__)  # an exception in the caller: no orphans
            return None
        self.shutdown(wait=True)
        return None


def _value_or_raise(outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if not ok:
        raise value
    return value
