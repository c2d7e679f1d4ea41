"""``poolparty.Executor``: a real ``concurrent.futures.Executor`` whose calls run as cluster jobs."""
from __future__ import annotations

import concurrent.futures as cf
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, Mapping

from poolparty.engine.by_value import register_local_modules
from poolparty.api.calls import SingleCalls
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
            chunksize: int = 1, resources: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """One array for the whole map (``chunksize`` tasks per job); results in order, lazily."""
        if self._shutdown:
            raise PoolClosedError("cannot schedule new futures after shutdown")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        end = None if timeout is None else time.monotonic() + timeout
        calls = [(i, Call(None, args)) for i, args in enumerate(zip(*iterables))]
        chunks = [calls[i:i + chunksize] for i in range(0, len(calls), chunksize)]
        register_local_modules([fn])
        handle = self._engine.submit(SharedFunction(fn), chunks, self._resources(resources))
        if self._progress is not None:
            self._progress.track(handle)
        cursor = handle.cursor(ordered=True)

        def results() -> Iterator[Any]:
            try:
                for _ in range(handle.n_tasks):
                    left = None if end is None else end - time.monotonic()
                    try:
                        _, ok, value = cursor.next(left)
                    except TimeoutError:
                        raise cf.TimeoutError() from None
                    except KeyboardInterrupt:
                        self._engine.terminate("KeyboardInterrupt")
                        raise
                    if not ok:
                        raise value
                    yield value
            finally:  # as the standard library: a timed-out or abandoned map cancels what is left
                if not handle.done():
                    self._engine.cancel(handle)

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        self._calls.flush()
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
