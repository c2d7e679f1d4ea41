"""The engine behind every way in (Pool, Executor, the Snakemake and Prefect plugins): a run
directory, a queue adapter and a dispatcher thread. Plugins call :meth:`Engine.submit` and read
``busy``, ``alive`` and ``stats``; the dispatcher itself is the engine's own."""
from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from poolparty.engine.accounting import efficiency_report
from poolparty.engine.batch_state import Batch, ChunkRun
from poolparty.store.inputs import BatchFiles, encode_batch
from poolparty.engine import lifecycle
from poolparty.engine.handle import BatchHandle
from poolparty.dispatch.endings import CallerCancelled
from poolparty.dispatch.loop import DispatchSettings, Dispatcher
from poolparty.errors import ConfigurationError, PoolClosedError
from poolparty.store.journal import Journal
from poolparty.payload import SharedFunction, default_python
from poolparty.queues import DEFAULT_QUEUE, make_queue
from poolparty.queues.base import QueueAdapter
from poolparty.resources import Resources
from poolparty.store.results import ResultStore
from poolparty.retry import RetryPolicy
from poolparty.queues.call_budget import DEFAULT_CALLS_PER_SECOND
from poolparty.queues.cli import SchedulerCLI
from poolparty.store.layout import job_name
from poolparty.store.run_dir import RunDir, new_run_dir, remove_run_dir
from poolparty.store.run_info import write_run_info

log = logging.getLogger("poolparty")


@dataclass
class EngineOptions:
    queue: str | QueueAdapter = DEFAULT_QUEUE
    max_running: int | None = None
    work_dir: str | os.PathLike[str] | None = None  # exact directory: resumable
    work_root: str | os.PathLike[str] | None = None  # parent of a fresh unique directory
    keep_work_dir: bool = False
    python_path: str | None = None
    polling_interval: float | None = None
    verbose: bool = False
    scheduler_timeout: float = 60.0
    scheduler_calls_per_second: float = DEFAULT_CALLS_PER_SECOND  # shared by the user's processes on this host
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    array: bool = True
    claim_chunks: bool = True  # an array element that finished its chunk runs chunks not started yet
    linger: float = 0.0  # seconds an element out of chunks waits for chunks of later batches (warm)
    resources: Resources = field(default_factory=Resources)
    max_result_size: int | None = None  # bytes of one pickled result; larger ones fail the task
    progress: bool | None = None  # Pool: a progress bar on a terminal; None = when stderr is a TTY
    walltime_signal_lead: int | None = None  # seconds before the walltime a job is warned; None: 10 %, 5 s..5 min


def kept_message(path: Path, unfinished: int) -> str:
    """The one line a pool that leaves work unfinished says when it closes: where, and what to run."""
    return (f"unfinished work ({unfinished} batch(es) of tasks) is kept in {path}: `poolparty status {path}` "
            f"shows it, `poolparty resume {path}` finishes it, `poolparty clean` removes it")


def default_work_root(queue: QueueAdapter) -> Path:
    env = os.environ.get("POOLPARTY_WORK_ROOT")
    return Path(env) if env else queue.default_work_root()


class Engine:
    """One pool's engine: every way in submits batches here and reads them back through handles."""

    def __init__(self, options: EngineOptions):
        self.options = options
        if options.max_running is not None and (not isinstance(options.max_running, int) or options.max_running < 1):
            raise ConfigurationError(f"max_running={options.max_running!r} must be a positive integer")
        python = options.python_path or default_python()
        if not os.path.isabs(python):
            raise ConfigurationError(f"python_path={python!r} must be an absolute path to the interpreter "
                                     "on the compute nodes")
        self._cli = SchedulerCLI(timeout=options.scheduler_timeout,
                                 calls_per_second=options.scheduler_calls_per_second)
        self.queue = make_queue(options.queue, self._cli)
        #: build the efficiency report when a map ends although nobody logs at INFO (a progress line shows it)
        self.report_efficiency = False
        try:
            self.queue.check_interpreter(python)
        except BaseException:
            self.queue.close()
            raise
        self.max_running = options.max_running or self.queue.default_max_running()
        self.explicit_dir = options.work_dir is not None
        self.run = self._open_run_dir()
        self.name = job_name(self.run.path)
        write_run_info(self.run.path, job_name=self.name, queue=self.queue.name, python=python,
                       max_running=self.max_running, array=options.array,
                       max_resubmissions=options.retry.max_resubmissions, resources=options.resources.to_json(),
                       max_result_size=options.max_result_size)
        self.queue.attach(self.run.path)
        if options.verbose:
            lifecycle.enable_verbose_logging()
        self._lock = threading.Lock()
        self._batch_count = 0
        self._kept: list[str] = []  # batches left unfinished (their files stay for resume)
        self._closed = False
        self._keep_for_resume: list[Path] = []
        self._dispatcher = Dispatcher(self.queue, self._dispatch_settings(python), self._batch_ended)
        lifecycle.watch(self)
        log.info("poolparty: pool %s on queue %s, work_dir %s (each map, or group of calls, is a 'batch' whose "
                 "tasks run in 'chunks': one chunk per job or array element)", self.name, self.queue.name,
                 self.run.path)

    def _open_run_dir(self) -> RunDir:
        """The exact ``work_dir`` (resumable) or a fresh one under the work root, locked for this pool."""
        options = self.options
        try:
            if self.explicit_dir:
                run = RunDir(Path(options.work_dir).absolute())  # type: ignore[arg-type]
            else:
                root = Path(options.work_root) if options.work_root else default_work_root(self.queue)
                run = RunDir(new_run_dir(root.absolute()))
            run.lock()
        except BaseException:
            self.queue.close()
            raise
        return run

    def _dispatch_settings(self, python: str) -> DispatchSettings:
        interval = self.options.polling_interval or self.queue.default_polling_interval
        return DispatchSettings(
            name=self.name, max_running=self.max_running, array=self.options.array, retry=self.options.retry,
            polling_interval=max(interval, self.queue.min_poll_interval),
            tick=self.queue.result_check_interval, python=python, script=self.run.job_script,
            claim_chunks=self.options.claim_chunks, linger=self.options.linger,
            walltime_signal_lead=self.options.walltime_signal_lead)

    @property
    def work_dir(self) -> Path:
        return self.run.path

    @property
    def busy(self) -> bool:
        """Batches submitted and not finished: closing now would wait, exiting now would cancel."""
        return self._dispatcher.busy

    @property
    def alive(self) -> bool:
        """The engine's thread still runs: what is unfinished will still be watched and reported."""
        return self._dispatcher.alive

    @property
    def stats(self) -> dict[str, int]:
        """Scheduler traffic so far (a copy): submissions, resubmissions, polls (shared_polls of them answered
        by another pool's status query, without a scheduler call), cancels."""
        return dict(self._dispatcher.stats)

    # -- submission ----------------------------------------------------------------------------
    def submit(self, shared: SharedFunction | None, chunks: Sequence[Sequence[tuple[int, Any]]],
               resources: Resources | None = None, *, kind: str = "map",
               give_up_policy: str = "cancel_pool", number: int | None = None) -> BatchHandle:
        """Pickle, write and queue one batch; returns at once. Bad input raises here, before submission:
        unpicklable payloads, and resources the scheduler says no job could ever get.

        ``number`` picks the batch directory explicitly (``poolparty resume`` refills batch N)."""
        resources = resources or self.options.resources
        encoded = encode_batch(shared, chunks)
        self.queue.check_resources(resources, self.run.job_script, self.run.path)
        with self._lock:
            if self._closed:
                raise PoolClosedError("this pool is closed; create a new one")
            if number is None:
                self._batch_count += 1
                number = self._batch_count
            else:
                self._batch_count = max(self._batch_count, number)
        files = BatchFiles(self.run.batch_dir(number))
        if files.exists():
            files.reopen(encoded)
        else:
            files.write(encoded, kind)
        handle = BatchHandle(encoded.n_tasks, f"batch {number} of pool {self.name}")
        handle.work_dir = str(self.run.path)
        handle.batch_dir = str(files.path)
        handle.kind = kind
        store = ResultStore(files)
        damage = store.damage_report(encoded.n_tasks)
        if damage is not None:
            log.warning("poolparty: %s: %s", handle.label, damage)
        runs = [ChunkRun(i, indices, resources) for i, (indices, _) in enumerate(encoded.chunks)]
        if store.stored:
            handle.deliver([(t, *store.read(t)) for t in sorted(store.stored)])
            for c in runs:
                if all(t in store.stored for t in c.tasks):
                    c.mark_done()
            log.info("poolparty: %s: %d of %d task(s) already finished in %s", handle.label,
                     len(store.stored), encoded.n_tasks, files.path)
        batch = Batch(number, files, handle, runs, store, Journal(files.journal),
                      give_up_policy=give_up_policy)
        batch.user_errors = sum(1 for ok, _ in store.stored.values() if not ok)
        self._dispatcher.add(batch)
        return handle

    def _report(self, batch: Batch) -> None:
        """A finished map's efficiency report (one accounting call), logged at INFO and kept on its handle
        for the progress line; only for a map (``Pool.map``, ``Executor.map``, not each group of calls or
        workflow jobs), only when someone asked to see it (this pool's ``verbose`` or progress display; not
        the process-wide logger level, which another pool's ``verbose`` may have raised), and never at the
        map's expense."""
        if batch.handle.kind != "map" or not (self.report_efficiency or self.options.verbose):
            return  # a workflow's many small batches are reported by `poolparty report`, not a call each
        try:
            report = efficiency_report([batch.files], type(self.queue), self.name, self._cli)
        except Exception as e:  # the report is a courtesy: the map's results are what matters
            log.warning("poolparty: %s: no efficiency report (%s: %s)", batch.handle.label, type(e).__name__, e)
            return
        batch.handle.efficiency = report.summary()
        log.info("poolparty: %s: %s", batch.handle.label, report.text())

    def _batch_ended(self, batch: Batch, error: BaseException | None) -> None:
        """A batch whose every task has an outcome is the caller's, failed tasks included (their
        exceptions reached the caller: a raised map, a future's exception), and so is one its caller
        cancelled: nothing is left to resume or inspect. One given up or ended by an abort (Ctrl-C,
        terminate with work in flight) keeps the work_dir, said once when the pool closes."""
        if error is not None and not isinstance(error, CallerCancelled):
            self._kept.append(batch.handle.label)
            log.info("poolparty: %s did not finish (%s); its files stay for resume: %s", batch.handle.label,
                     type(error).__name__, batch.files.path)
            return
        if error is None:
            self._report(batch)
        if not self.options.keep_work_dir:
            if self.explicit_dir:
                self._keep_for_resume.append(batch.files.path)  # removed when the pool closes clean
            else:
                shutil.rmtree(batch.files.path, ignore_errors=True)

    def progress(self) -> dict[str, int]:
        """Chunks and tasks by phase, for progress displays."""
        return self._dispatcher.progress()

    def cancel(self, handle: BatchHandle) -> None:
        """Cancel one batch's jobs (one scheduler call); the pool stays usable."""
        self._dispatcher.cancel_batch(handle)

    # -- lifecycle -----------------------------------------------------------------------------
    def terminate(self, reason: str = "terminate") -> None:
        """Cancel every job of the pool at once and fail what is unfinished."""
        self._dispatcher.abort(reason)
        self._release()

    def close(self) -> None:
        """Wait for submitted work, then release the work_dir (removed when everything was clean)."""
        with self._lock:
            self._closed = True
        self._dispatcher.stop()
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._closed = True
            if self.run is None:
                return
            run, self.run = self.run, None  # type: ignore[assignment]
        self.queue.close()
        lifecycle.forget(self)
        run.unlock()
        if self._kept:
            log.warning("poolparty: %s", kept_message(run.path, len(self._kept)))
            return
        if self.options.keep_work_dir:
            return
        for p in self._keep_for_resume:
            shutil.rmtree(p, ignore_errors=True)
        remove_run_dir(run.path, ignore_errors=True)
