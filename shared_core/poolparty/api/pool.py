"""``poolparty.Pool``: a drop-in for ``multiprocessing.Pool`` whose workers are cluster jobs."""
from __future__ import annotations

import logging
import multiprocessing
import threading
import warnings
import weakref
from multiprocessing.pool import MaybeEncodingError
from typing import Any, Callable, Iterable, Mapping, Sequence

from poolparty.engine.handle import BatchHandle
from poolparty.engine.by_value import register_local_modules
from poolparty.api.calls import SingleCalls
from poolparty.api.streaming import MapStream, SubmitChunks, cut_chunks, default_chunksize, is_sized
from poolparty.engine.engine import Engine
from poolparty.engine import lifecycle
from poolparty.errors import PoolClosedError, RemoteTraceback
from poolparty.payload import Call, SharedFunction
from poolparty.api.progress import ProgressBar, wanted as progress_wanted
from poolparty.resources import Resources
from poolparty.api.options import build_engine_options

_UNSET = object()
log = logging.getLogger("poolparty")


class AsyncResult:
    """As ``multiprocessing.pool.AsyncResult``: ``get(timeout)``, ``wait``, ``ready``, ``successful``."""

    def __init__(self, pool: "Pool", wait: Callable[[float | None], bool], value: Callable[[], Any],
                 callback: Callable[[Any], None] | None, error_callback: Callable[[BaseException], None] | None):
        # weakly, as multiprocessing's results do not keep their pool: a pool dropped with work pending
        # is garbage-collected (ResourceWarning) and terminated, and this result fails instead of hanging
        self._pool_ref = weakref.ref(pool)
        self._wait = wait
        self._value = value
        self._callback = callback
        self._error_callback = error_callback
        self._outcome: tuple[bool, Any] | None = None
        self._lock = threading.Lock()
        self._event = threading.Event()  # set once the callbacks ran: ready() implies they did, as in multiprocessing

    def _resolve(self) -> tuple[bool, Any]:
        with self._lock:
            if self._outcome is None:
                try:
                    self._outcome = (True, self._value())
                except BaseException as e:
                    self._outcome = (False, as_multiprocessing_error(e))
            return self._outcome

    def _fire_callbacks(self) -> None:
        ok, value = self._resolve()
        try:
            if ok and self._callback is not None:
                self._callback(value)
            elif not ok and self._error_callback is not None:
                self._error_callback(value)
        except Exception:  # runs on the dispatcher thread: a user's callback error must not stop the pool
            log.exception("poolparty: exception in the callback of %r", self)
        finally:
            self._event.set()
            pool = self._pool_ref()
            if pool is not None:
                pool._callback_done()

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._resolve()[0]

    def wait(self, timeout: float | None = None) -> None:
        self._interruptible(lambda: self._event.wait(timeout))

    def _interruptible(self, fn: Callable[[], Any]) -> Any:
        pool = self._pool_ref()
        return fn() if pool is None else pool._interruptible(fn)

    def get(self, timeout: float | None = None) -> Any:
        if not self._interruptible(lambda: self._event.wait(timeout)):
            raise multiprocessing.TimeoutError
        ok, value = self._resolve()
        if ok:
            return value
        raise value


class MapResult(AsyncResult):
    pass


class IMapIterator:
    """As ``multiprocessing.pool.IMapIterator``: iterate, or ``next(timeout)``; inputs are read lazily
    (:mod:`poolparty.api.streaming`)."""

    def __init__(self, pool: "Pool", stream: MapStream):
        self._pool = pool
        self._stream = stream
        # an iterator dropped before its end reads no more input (its feeder thread ends)
        weakref.finalize(self, stream.stop)

    def __iter__(self) -> "IMapIterator":
        return self

    def next(self, timeout: float | None = None) -> Any:
        try:
            ok, value = self._pool._interruptible(lambda: self._stream.next(timeout))
        except TimeoutError:
            raise multiprocessing.TimeoutError from None
        if not ok:
            raise as_multiprocessing_error(value)
        return value

    __next__ = next


class Pool:
    """``Pool(processes)`` caps the jobs running at once (alias of ``max_running``); keyword options
    choose the queue (``queue='local'|'slurm'|'sge'|'pbs'|'lsf'``), the work_dir, retries and the resources of
    each job (``cpus``, ``memory``, ``walltime``, ``partition``, ``account``, ``qos``, ``gpus``, ``extra``).
    """

    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: Sequence[Any] = (), maxtasksperchild: int | None = None, context: Any = None,
                 **options: Any):
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise ValueError("Number of processes must be at least 1")
        self._engine = Engine(build_engine_options(processes, options))
        self._work_dir = self._engine.work_dir  # still known after close: a failed run's dir is kept
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._state = "RUN"
        self._outstanding = 0
        self._cond = threading.Condition()
        self._calls = SingleCalls(self._engine, self._engine.queue.batching_window,
                                  initializer=initializer, initargs=self._initargs)
        lifecycle.flush_at_exit(self._calls.flush)
        self._streams: "weakref.WeakSet[MapStream]" = weakref.WeakSet()  # imap's, read lazily
        self._progress = ProgressBar(self._engine.progress, f"poolparty {self._engine.name}") \
            if progress_wanted(self._engine.options.progress) else None
        self._engine.report_efficiency = self._progress is not None  # its last line summarises the report
        # as multiprocessing.Pool: a pool dropped without close()/terminate() is terminated
        weakref.finalize(self, self._engine.terminate, "pool garbage-collected").atexit = False

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # as multiprocessing.Pool (3.8+): a running pool dropped without close()/terminate() says so;
        # the finalizer above still cancels its jobs
        if getattr(self, "_state", None) == "RUN":
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    # -- properties ----------------------------------------------------------------------------
    @property
    def work_dir(self) -> Any:
        return self._work_dir

    @property
    def engine(self) -> Engine:
        return self._engine

    def __len__(self) -> int:
        return self._engine.max_running

    def __repr__(self) -> str:
        return f"<poolparty.Pool state={self._state} queue={self._engine.queue.name} " \
               f"max_running={self._engine.max_running}>"

    # -- internals -----------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._state != "RUN":
            raise PoolClosedError("Pool not running")

    def _interruptible(self, fn: Callable[[], Any]) -> Any:
        """Ctrl-C or SystemExit while waiting cancels every job of the pool, and says so."""
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit) as e:
            self._state = "TERMINATE"
            self._engine.terminate("KeyboardInterrupt" if isinstance(e, KeyboardInterrupt) else "SystemExit")
            raise

    def _track(self) -> None:
        with self._cond:
            self._outstanding += 1

    def _callback_done(self) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def _resources(self, resources: Mapping[str, Any] | None) -> Resources | None:
        if not resources:
            return None
        return Resources.from_mapping(resources, base=self._engine.options.resources)

    def _default_chunksize(self, n: int) -> int:
        chunksize, extra = divmod(n, len(self) * 4)
        return max(1, chunksize + (1 if extra else 0))

    def _submit_map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
                    star: bool, resources: Mapping[str, Any] | None) -> BatchHandle:
        self._check_running()
        items = iterable if is_sized(iterable) else list(iterable)  # map reads all, as multiprocessing's
        if chunksize is None:
            chunksize = self._default_chunksize(len(items))  # type: ignore[arg-type]
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        return self._window_submitter(func, star, resources)(cut_chunks(list(items), chunksize))

    def _window_submitter(self, func: Callable[..., Any], star: bool,
                          resources: Mapping[str, Any] | None) -> SubmitChunks:
        """Submits chunks of (task index, input) as one batch of ``func``, tracked by the progress bar."""
        register_local_modules([func, self._initializer])
        shared = SharedFunction(func, star, self._initializer, self._initargs)
        res = self._resources(resources)

        def submit(chunks: list[list[tuple[int, Any]]]) -> BatchHandle:
            calls = [[(i, Call(None, tuple(x) if star else (x,))) for i, x in chunk] for chunk in chunks]
            handle = self._engine.submit(shared, calls, res)
            if self._progress is not None:
                self._progress.track(handle)
            return handle

        return submit

    def _stream(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None,
                resources: Mapping[str, Any] | None, ordered: bool) -> IMapIterator:
        self._check_running()
        if chunksize is None:
            chunksize = default_chunksize(len(iterable) if is_sized(iterable) else None, len(self))  # type: ignore[arg-type]
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        stream = MapStream(self._window_submitter(func, False, resources), iterable, chunksize=chunksize,
                           max_running=len(self), ordered=ordered)
        self._streams.add(stream)
        return IMapIterator(self, stream)

    def _async(self, wait: Callable[[float | None], bool], value: Callable[[], Any],
               add_done: Callable[[Callable[..., None]], None], callback: Any, error_callback: Any,
               cls: type = AsyncResult) -> AsyncResult:
        result = cls(self, wait, value, callback, error_callback)
        self._track()
        add_done(lambda *_: result._fire_callbacks())
        return result

    # -- the multiprocessing.Pool surface ------------------------------------------------------
    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (), kwds: Mapping[str, Any] = {}) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Sequence[Any] = (), kwds: Mapping[str, Any] = {},
                    callback: Callable[[Any], None] | None = None,
                    error_callback: Callable[[BaseException], None] | None = None, *,
                    resources: Mapping[str, Any] | None = None) -> AsyncResult:
        self._check_running()
        call = Call(func, tuple(args), dict(kwds))  # the initializer travels once per batch (SingleCalls)
        fut = self._calls.submit(call, self._resources(resources) or self._engine.options.resources)

        def wait(timeout: float | None) -> bool:
            try:
                fut.exception(timeout)
                return True
            except TimeoutError:
                return False
            except BaseException:
                return True

        return self._async(wait, fut.result, fut.add_done_callback, callback, error_callback)

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None, *,
            resources: Mapping[str, Any] | None = None) -> list[Any]:
        return self.map_async(func, iterable, chunksize, resources=resources).get()

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]], chunksize: int | None = None,
                *, resources: Mapping[str, Any] | None = None) -> list[Any]:
        return self.starmap_async(func, iterable, chunksize, resources=resources).get()

    def map_async(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[Any], None] | None = None,
                  error_callback: Callable[[BaseException], None] | None = None, *,
                  resources: Mapping[str, Any] | None = None) -> MapResult:
        handle = self._submit_map(func, iterable, chunksize, False, resources)
        return self._async(handle.wait, handle.results, handle.add_done_callback, callback, error_callback,
                           MapResult)  # type: ignore[return-value]

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                      chunksize: int | None = None, callback: Callable[[Any], None] | None = None,
                      error_callback: Callable[[BaseException], None] | None = None, *,
                      resources: Mapping[str, Any] | None = None) -> MapResult:
        handle = self._submit_map(func, iterable, chunksize, True, resources)
        return self._async(handle.wait, handle.results, handle.add_done_callback, callback, error_callback,
                           MapResult)  # type: ignore[return-value]

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None, *,
             resources: Mapping[str, Any] | None = None) -> IMapIterator:
        """Results in input order as they come; the input is read lazily. ``chunksize`` not given: see
        :func:`poolparty.api.streaming.default_chunksize` (multiprocessing's default is 1)."""
        return self._stream(func, iterable, chunksize, resources, ordered=True)

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None, *,
                       resources: Mapping[str, Any] | None = None) -> IMapIterator:
        """Results as they arrive; the input is read lazily (see :meth:`imap`)."""
        return self._stream(func, iterable, chunksize, resources, ordered=False)

    def close(self) -> None:
        if self._state == "RUN":
            self._calls.flush()
            for stream in list(self._streams):  # as multiprocessing: what was mapped still runs
                stream.drain()
            self._state = "CLOSE"

    def terminate(self) -> None:
        self._state = "TERMINATE"
        for stream in list(self._streams):
            stream.stop()
        self._calls.flush()
        self._engine.terminate("terminate")
        if self._progress is not None:
            self._progress.stop()

    def join(self) -> None:
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        if self._state == "CLOSE":
            for stream in list(self._streams):
                self._interruptible(stream.wait_fed)
            self._interruptible(self._engine.close)
        with self._cond:
            while self._outstanding > 0:
                self._cond.wait(0.5)

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.terminate()  # as multiprocessing.Pool: leaving the block terminates the pool


def as_multiprocessing_error(error: BaseException) -> BaseException:
    """As ``multiprocessing.Pool``: a result the node could not pickle is a ``MaybeEncodingError`` (the
    pickler's own exception is its ``__cause__``); every other exception is the task's own."""
    cause = error.__cause__
    if not isinstance(cause, RemoteTraceback) or cause.stage != "result" or not isinstance(error, Exception):
        return error  # a BaseException (sys.exit() in a __reduce__) keeps its own type
    wrapped = MaybeEncodingError(error, None)
    wrapped.value = cause.value or "<the task's return value>"  # its repr, made on the node
    wrapped.args = (wrapped.exc, wrapped.value)
    wrapped.__cause__ = error
    return wrapped
