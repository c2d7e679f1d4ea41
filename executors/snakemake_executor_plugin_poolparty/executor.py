"""The Snakemake executor: set-up of one poolparty engine per workflow run, the three verbs Snakemake
calls (run the jobs of a round, check the active ones, cancel) and the release of the engine."""
import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, AsyncGenerator, List, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface

from snakemake_executor_plugin_poolparty.commands import job_command
from snakemake_executor_plugin_poolparty.logs import LOG_DIR, SnakemakeLogBridge, remove_old_logs, write_job_log
from poolparty.queues import queue_class
from snakemake_executor_plugin_poolparty.settings import QUEUES, WORK_DIR, ExecutorSettings, parse_bool
from snakemake_executor_plugin_poolparty.status import WAIT_FOR_LOG, failure_message, hold_back, read_outcome
from snakemake_executor_plugin_poolparty.submission import RoundSubmission

#: shortest pause between two status checks (they cost no scheduler call, but must not spin)
MIN_STATUS_PAUSE = 0.2
#: the same on a queue that reports at once (the local queue): a result is the next round's start, and
#: with small -j every round trip counts (a check reads in-memory handles only)
MIN_STATUS_PAUSE_AT_ONCE = 0.02


class Executor(RemoteExecutor):
    def __init__(self, workflow: Any, logger: Any):
        # the status thread starts inside RemoteExecutor.__init__, before __post_init__: what it
        # touches must exist first
        self._wake = threading.Event()
        self._engine: Any = None
        self._window: Any = None
        self._engine_lock = threading.Lock()
        self._released = False
        self._warned: set = set()
        self._run_logs: Optional[Path] = None
        self._log_bridge: Optional[logging.Handler] = None
        self._holding = False  # finished jobs held back for a burst: check again soon
        self._burst = False  # report finished jobs in bursts (cluster queues)
        self._forked = False  # jobs run in children forked from a warm Snakemake process (element.py)
        super().__init__(workflow, logger)

    # -- set-up --------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        from poolparty import Engine, EngineOptions, Resources, RetryPolicy
        from poolparty.api.batching import BatchingWindow

        s = self.workflow.executor_settings
        if not isinstance(s, ExecutorSettings):
            s = ExecutorSettings()
        self.settings = s
        if s.queue not in QUEUES:
            raise WorkflowError(f"--poolparty-queue {s.queue!r}: choose one of {', '.join(QUEUES)}")
        self._burst = not queue_class(s.queue).runs_on_this_host
        self._forked = self._check_forked_jobs(s)
        if self.workflow.remote_execution_settings.immediate_submit:
            raise WorkflowError("poolparty does not support --immediate-submit: the engine in this Snakemake "
                                "process submits, watches and resubmits the jobs, so it has to keep running")
        self.workdir = Path(self.workflow.workdir_init).absolute()
        work_root = Path(os.path.expandvars(os.path.expanduser(s.work_root))) if s.work_root \
            else self.workdir / WORK_DIR
        log_root = self.workdir / LOG_DIR
        remove_old_logs(log_root, work_root, s.keep_logs_days)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self._run_logs = log_root / f"{stamp}-{os.getpid()}"
        try:
            options = EngineOptions(
                queue=s.queue, max_running=self._max_running(s), work_root=work_root,
                polling_interval=s.polling_interval, array=parse_bool(s.array), linger=max(0.0, s.linger or 0.0),
                retry=RetryPolicy(max_resubmissions=s.max_resubmissions),
                resources=Resources(partition=s.partition or None, account=s.account or None))
            self._engine = Engine(options)
        except Exception as e:
            raise WorkflowError(f"poolparty: cannot start the {s.queue} queue: {e}") from e
        # Snakemake's round is the window: it is submitted at once (window=None, flushed per round)
        sink = RoundSubmission(self._engine.name, self._register, self._report_error, self._wake)
        # forked jobs: a round's jobs are packed several per element (each still its own task)
        self._window = BatchingWindow(self._engine, sink, window=None, kind="snakemake",
                                      give_up_policy="fail_batch", tasks_per_job=None if self._forked else 1)
        self._log_bridge = SnakemakeLogBridge(self.logger)
        logging.getLogger("poolparty").addHandler(self._log_bridge)
        self.logger.info(f"poolparty: {s.queue} queue, pool {self._engine.name}, work directory "
                         f"{self._engine.work_dir}")

    @staticmethod
    def _check_forked_jobs(s: ExecutorSettings) -> bool:
        """``--poolparty-fork-jobs``: refused with the reason when this Snakemake cannot run a job in a
        forked child (a feature test of the entry point the element calls)."""
        if not parse_bool(s.fork_jobs):
            return False
        from snakemake_executor_plugin_poolparty.element import supports_forked_jobs
        from poolparty.engine.by_value import importable_on_nodes

        why = supports_forked_jobs()
        if why is not None:
            raise WorkflowError(f"poolparty: cannot run Snakemake jobs in forked children: {why}; "
                                "run with --poolparty-fork-jobs no")
        importable_on_nodes("snakemake_executor_plugin_poolparty")  # the node runs the installed module
        return True

    def _max_running(self, s: ExecutorSettings) -> Optional[int]:
        if s.max_running:
            return s.max_running
        if queue_class(s.queue).runs_on_this_host:
            return None  # the core's default: one per CPU
        nodes = getattr(self.workflow.resource_settings, "nodes", None)
        if isinstance(nodes, int) and 0 < nodes < 1_000_000:
            return nodes
        return None

    # -- submission ----------------------------------------------------------------------------
    def run_job(self, job: JobExecutorInterface) -> None:
        self._submit_round([job])

    def run_jobs(self, jobs: List[JobExecutorInterface]) -> None:
        for job in jobs:
            self.run_job_pre(job)
        self._submit_round(jobs)

    def _submit_round(self, jobs: List[JobExecutorInterface]) -> None:
        """One engine batch (one array) per set of identical resources among jobs ready together."""
        for job in jobs:
            try:
                resources = self._resources(job)
                command = job_command(self, job, self.workdir, self._forked)
            except Exception as e:
                self._report_error(SubmittedJobInfo(job), f"poolparty: cannot submit this job: {e}. ")
                continue
            self._window.add(job, command, resources)
        self._window.flush()

    def _resources(self, job: JobExecutorInterface) -> Any:
        from poolparty.api.workflow_resources import resources_from_workflow

        values = dict(job.resources.items())
        values.setdefault("threads", job.threads)
        floor = self.settings.min_mem_mb or 0
        mem_mb = values.get("mem_mb")
        if floor > 0 and isinstance(mem_mb, (int, float)) and mem_mb < floor:
            values["mem_mb"] = floor
            values.pop("mem_mib", None)
        translated = resources_from_workflow(values, self.settings.queue, self._engine.options.resources)
        for name in translated.ignored if not queue_class(self.settings.queue).runs_on_this_host else ():
            key = (self._job_label(job), name)
            if key not in self._warned:
                self._warned.add(key)
                self.logger.warning(f"poolparty: resource {name} of {self._job_label(job)} has no meaning "
                                    f"on the {self.settings.queue} queue and is ignored")
        return translated.resources

    def _register(self, info: SubmittedJobInfo) -> None:
        try:
            self.report_job_submission(info)
        except Exception as e:  # never lose a job: it is still checked and reported
            self.logger.error(f"poolparty: could not register {self._job_label(info.job)}: {e}")

    # -- status --------------------------------------------------------------------------------
    async def check_active_jobs(
            self, active_jobs: List[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        """Reads the batch handles only (no scheduler call); reports or yields every job; never raises.

        On a cluster, finished jobs are reported in bursts (:func:`.status.hold_back`), so that the
        jobs they make ready reach ``run_jobs`` together and leave as one array.
        """
        self._wake.clear()
        self._holding = False
        now = time.monotonic()
        finished = []
        for info in active_jobs:
            try:
                outcome = read_outcome(info.aux["handle"], info.aux["task"], info.aux, now, self._engine_alive)
            except Exception as e:
                outcome = ("internal", e)
            if outcome is WAIT_FOR_LOG:
                self._holding = True
                outcome = None
            if outcome is None:
                yield info
            else:
                info.aux.setdefault("finished_at", now)
                finished.append((info, outcome))
        if hold_back([info.aux["finished_at"] for info, _ in finished], now, self._burst):
            self._holding = True
            for info, _ in finished:
                yield info
            return
        for info, (kind, value) in finished:
            try:
                if kind == "ok":
                    self.report_job_success(info)
                elif kind == "internal":
                    self._report_error(info, f"poolparty: internal error while checking this job: {value!r}. ")
                else:
                    self._report_failure(info, info.aux["handle"], info.aux["task"], value)
            except Exception as e:
                self._report_error(info, f"poolparty: internal error while reporting this job: {e!r}. ")

    def _engine_alive(self) -> bool:
        return self._engine is None or self._engine.alive

    def _report_failure(self, info: SubmittedJobInfo, handle: Any, task: int, error: Any) -> None:
        from poolparty.store.logs import chunk_log_text

        msg = failure_message(error, info.external_jobid, task, self.settings.max_resubmissions)
        text = getattr(error, "log", None)  # a forked job's own output (its element may have run others)
        if not isinstance(text, str):
            try:
                text = chunk_log_text(handle, task)
            except Exception as e:
                text = f"(poolparty: could not read the stored job log: {e})"
        try:
            assert self._run_logs is not None
            path: Optional[Path] = write_job_log(self._run_logs, info.job, msg, text, f"{handle.work_dir}/batches")
        except Exception as e:
            self.logger.error(f"poolparty: could not write the log of {self._job_label(info.job)}: {e}")
            path = None
        self._report_error(info, msg, aux_logs=[str(path)] if path else [])

    def _report_error(self, info: SubmittedJobInfo, msg: str, **kwargs: Any) -> None:
        try:
            self.report_job_error(info, msg=msg, **kwargs)
        except Exception as e:
            self.logger.error(f"poolparty: could not report the failure of {self._job_label(info.job)}: {e}")
            try:  # at least release the scheduler's slot, or the workflow would wait forever
                self.workflow.scheduler.error_callback(info.job)
            except Exception:
                pass

    async def sleep(self) -> None:
        """Wait for the next status check: woken at once when a result arrives."""
        configured = self.workflow.remote_execution_settings.seconds_between_status_checks
        floor = MIN_STATUS_PAUSE if self._burst else MIN_STATUS_PAUSE_AT_ONCE
        pause = floor if self._holding else max(floor, float(configured or 0))
        deadline = time.monotonic() + pause
        await asyncio.sleep(floor)
        while time.monotonic() < deadline and not self._wake.is_set():
            with self.lock:
                if not self.wait:
                    return
            await asyncio.sleep(floor / 4)

    # -- cancellation and end ------------------------------------------------------------------
    def cancel_jobs(self, active_jobs: List[SubmittedJobInfo]) -> None:
        """Ctrl-C: every job of the workflow is cancelled in one scheduler call."""
        self._release(cancel=True, reason="cancelled by Snakemake")

    def shutdown(self) -> None:
        try:
            super().shutdown()
        finally:
            # jobs Snakemake no longer waits for (it stopped after an error) must not run on
            self._release(cancel=None, reason="Snakemake shut down")

    def _release(self, cancel: Optional[bool], reason: str) -> None:
        with self._engine_lock:
            if self._released or self._engine is None:
                return
            self._released = True
            engine = self._engine
        try:
            if cancel or (cancel is None and engine.busy):
                engine.terminate(reason)
            else:
                engine.close()
        except Exception as e:
            self.logger.error(f"poolparty: {reason}: could not cancel/close the pool {engine.name}: {e}; "
                              f"cancel its jobs by hand (job name {engine.name})")
        finally:
            if self._log_bridge is not None:
                logging.getLogger("poolparty").removeHandler(self._log_bridge)

    @staticmethod
    def _job_label(job: JobExecutorInterface) -> str:
        return f"group job {job.name}" if job.is_group() else f"rule {job.name}"
