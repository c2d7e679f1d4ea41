"""``poolparty.Executor``: a real ``concurrent.futures.Executor`` whose calls run as cluster jobs."""
from __future__ import annotations

import concurrent.futures as cf
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping

from poolparty.engine.by_value import register_local_modules
from poolparty.api.calls import SingleCalls
from poolparty.api.streaming import MapStream, default_chunksize, is_sized
from poolparty.engine.handle import BatchHandle
from poolparty.engine.engine import Engine
from poolparty.errors import PoolClosedError
from poolparty.payload import Call, SharedFunction
from poolparty.api.progress import ProgressBar, wanted as progress_wanted
from poolparty.resources import Resources
from poolparty.api.options import build_engine_options


class Executor(cf.Executor):
    """``submit`` returns a ``concurrent.futures.Future``; calls submitted close together leave as one
    array. ``max_workers`` caps the jobs running at once (alias of ``max_running``)."""

    def __init__(self, max_workers: int | None = None, **options: Any):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._engine = Engine(build_engine_options(max_workers, options))
        self._work_dir = self._engine.work_dir  # still known after shutdown: a failed run's dir is kept
        self._calls = SingleCalls(self._engine, self._engine.queue.batching_window)
        # a bar for long ``map`` calls, as Pool has (on a terminal, or progress=True)
        self._progress = ProgressBar(self._engine.progress, f"poolparty {self._engine.name}") \
            if progress_wanted(self._engine.options.progress) else None
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
        if self._shutdown:
            raise PoolClosedError("cannot schedule new futures after shutdown")
        fut = self._calls.submit(Call(fn, tuple(args), dict(kwargs or {})), self._resources(resources))
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, resources: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Results in order, lazily; the inputs are read lazily too (sequences leave as one array, other
        iterables a window at a time: :mod:`poolparty.api.streaming`). ``timeout`` counts from this call,
        as in the standard library; closing the iterator cancels what has not run."""
        if self._shutdown:
            raise PoolClosedError("cannot schedule new futures after shutdown")
        end = None if timeout is None else time.monotonic() + timeout
        sized = all(is_sized(it) for it in iterables)
        inputs: Iterable[Any] = list(zip(*iterables)) if sized else zip(*iterables)
        if chunksize is None:
            chunksize = default_chunksize(len(inputs) if sized else None, self._engine.max_running)  # type: ignore[arg-type]
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        register_local_modules([fn])
        shared, res = SharedFunction(fn), self._resources(resources)

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
            import threading

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
