"""Snakemake executor plugin: ``snakemake --executor poolparty --poolparty-queue slurm -j 100``.

It only translates: the Snakemake jobs of one scheduling round that share resources become one
:meth:`poolparty.Engine.submit` batch (one array), their status is read from the batch handles (the
engine polls the scheduler once per round for the whole pool), Ctrl-C becomes
:meth:`poolparty.Engine.terminate`. Submission, polling, resubmission of infrastructure failures and
cancellation are the core's. See docs/snakemake.md.

Snakemake imports every installed plugin at every start: this module imports nothing but the plugin
interface and the standard library; poolparty itself is imported when the executor is created.
"""
# no ``from __future__ import annotations``: Snakemake reads the settings' field types at run time
import asyncio
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncGenerator, Dict, List, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from poolparty.queues import QUEUE_NAMES, queue_class  # the registry only: no adapter is imported here

QUEUES = QUEUE_NAMES
LOG_DIR = Path(".snakemake") / "poolparty_logs"
WORK_DIR = Path(".snakemake") / "poolparty"
#: a failed task's job log is stored by the engine right after its result: wait this long for it
LOG_WAIT = 10.0
#: shortest pause between two status checks (they cost no scheduler call, but must not spin)
MIN_STATUS_PAUSE = 0.2
#: cluster queues: finished jobs are reported once no other result came for 1 s (at most 5 s late)
REPORT_BURST = (1.0, 5.0)


def parse_bool(value: Any) -> bool:
    """``yes/no``, ``true/false``, ``1/0``, ``on/off`` (command line, environment, profile)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def _setting(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "env_var": True, **meta})


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    queue: str = _setting(
        "local", "Where jobs run: 'local' (processes on this machine), 'slurm' or 'sge'.",
        choices=list(QUEUES))
    max_running: Optional[int] = _setting(
        None, "Most jobs of this workflow queued or running in the scheduler at once. Default: the "
        "number of CPUs for the local queue, the value of --jobs for SLURM and SGE.")
    polling_interval: Optional[float] = _setting(
        None, "Longest pause in seconds between two scheduler status queries (one query covers every "
        "job of the workflow; the pause shortens while jobs change state). Default: 2 local, 30 on a "
        "cluster. Finished jobs are noticed from their result files, not from these queries.")
    partition: Optional[str] = _setting(
        None, "Default SLURM partition (SGE: queue) for jobs without a slurm_partition/sge_queue "
        "resource.")
    account: Optional[str] = _setting(
        None, "Default account (SLURM --account, SGE -A) for jobs without a slurm_account resource.")
    max_resubmissions: int = _setting(
        3, "How often a job that failed for an infrastructure reason (node failure, preemption, "
        "vanished job, out of memory, walltime) is resubmitted before Snakemake is told it failed. "
        "Memory and walltime are doubled on OOM and timeout. Failures of the rule itself are never "
        "resubmitted: use Snakemake's --retries.")
    array: Optional[bool] = _setting(
        True, "yes: jobs that become ready together with the same resources go out as one job array "
        "(one sbatch/qsub); no: one plain scheduler job per Snakemake job.",
        type=parse_bool, metavar="yes|no")
    min_mem_mb: int = _setting(
        500, "Smallest memory request of a job in MB: each job runs a Snakemake process (about 100 MB) "
        "next to the rule, so a rule's tiny mem_mb would get the job killed for lack of memory. Larger "
        "mem_mb values are passed as they are; 0 passes every value as it is.")
    keep_logs_days: int = _setting(
        7, "Logs of failed jobs (.snakemake/poolparty_logs) and kept work directories "
        "(.snakemake/poolparty) older than this many days are deleted when a workflow starts; 0 keeps "
        "everything.")
    work_root: Optional[str] = _setting(
        None, "Directory for poolparty's run directories (inputs, results, reduced logs); it must be "
        "visible from the compute nodes. Default: .snakemake/poolparty in the working directory.")


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    # the job inherits the environment through the scheduler (local: copied, SLURM --export=ALL,
    # SGE -V): --envvars values never appear in a command line or a file
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    # status checks read the engine's handles, no scheduler call: nothing to wait for
    init_seconds_before_status_checks=0,
)


def remove_old_logs(log_root: Path, work_root: Path, days: float) -> list:
    """Retention: delete per-run log directories (``log_root/*``) and run directories
    (``work_root/run-*``) older than ``days``, except those a live pool holds (its ``lock`` flock).
    ``days <= 0`` keeps everything. Returns what was deleted."""
    if not days or days <= 0:
        return []
    import fcntl
    import shutil

    limit = time.time() - days * 86400
    removed = []
    for root, pattern in ((log_root, "*"), (work_root, "run-*")):
        try:
            entries = list(root.glob(pattern))
        except OSError:
            continue
        for p in entries:
            try:
                if not p.is_dir() or p.stat().st_mtime >= limit:
                    continue
                lock = p / "lock"
                if lock.exists():
                    fd = os.open(lock, os.O_RDONLY)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # a live pool: leave its directory alone
                    finally:
                        os.close(fd)
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            except OSError:
                continue
    return removed


class _ToSnakemakeLog(logging.Handler):
    """The core's warnings and errors (resubmissions, give-ups, kept work directories) in Snakemake's log."""

    def __init__(self, target: Any):
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            (self.target.error if record.levelno >= logging.ERROR else self.target.warning)(msg)
        except Exception:
            pass


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(text))[:120] or "job"


class Executor(RemoteExecutor):
    def __init__(self, workflow: Any, logger: Any):
        # the status thread starts inside RemoteExecutor.__init__, before __post_init__: what it
        # touches must exist first
        self._wake = threading.Event()
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._released = False
        self._warned: set = set()
        self._run_logs: Optional[Path] = None
        self._log_bridge: Optional[logging.Handler] = None
        self._holding = False  # finished jobs held back for a burst: check again soon
        self._burst = False  # report finished jobs in bursts (cluster queues)
        super().__init__(workflow, logger)

    # -- set-up --------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        from poolparty import Engine, EngineOptions, Resources, RetryPolicy

        s = self.workflow.executor_settings
        if not isinstance(s, ExecutorSettings):
            s = ExecutorSettings()
        self.settings = s
        if s.queue not in QUEUES:
            raise WorkflowError(f"--poolparty-queue {s.queue!r}: choose one of {', '.join(QUEUES)}")
        self._burst = not queue_class(s.queue).runs_on_this_host
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
                polling_interval=s.polling_interval, array=parse_bool(s.array),
                retry=RetryPolicy(max_resubmissions=s.max_resubmissions),
                resources=Resources(partition=s.partition or None, account=s.account or None))
            self._engine = Engine(options)
        except Exception as e:
            raise WorkflowError(f"poolparty: cannot start the {s.queue} queue: {e}") from e
        self._log_bridge = _ToSnakemakeLog(self.logger)
        logging.getLogger("poolparty").addHandler(self._log_bridge)
        self.logger.info(f"poolparty: {s.queue} queue, pool {self._engine.name}, work directory "
                         f"{self._engine.work_dir}")

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
        groups: Dict[Any, List[Any]] = {}
        for job in jobs:
            try:
                resources = self._resources(job)
                command = self._command(job)
            except Exception as e:
                self._report_error(SubmittedJobInfo(job), f"poolparty: cannot submit this job: {e}. ")
                continue
            groups.setdefault(resources, []).append((job, command))
        for resources, members in groups.items():
            self._submit_batch(resources, members)

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

    def _command(self, job: JobExecutorInterface) -> Any:
        from poolparty import ShellCommand

        if self.is_default_jobscript:
            return ShellCommand(self.format_job_exec(job), cwd=str(self.workdir))
        # a --jobscript template (e.g. one that loads modules): write it and run it
        path = self.get_jobscript(job)
        self.write_jobscript(job, path)
        return ShellCommand(["/bin/sh", path], cwd=str(self.workdir))

    def _submit_batch(self, resources: Any, members: List[Any]) -> None:
        engine = self._engine
        try:
            chunks = [[(i, command)] for i, (_, command) in enumerate(members)]
            handle = engine.submit(None, chunks, resources, kind="snakemake", give_up_policy="fail_batch")
        except Exception as e:
            for job, _ in members:
                self._report_error(SubmittedJobInfo(job), f"poolparty: submission failed: {e}. ")
            return
        wake = self._wake
        handle.add_task_callback(lambda *_: wake.set())
        handle.add_done_callback(lambda _: wake.set())
        number = Path(handle.batch_dir or "0").name
        for i, (job, _) in enumerate(members):
            info = SubmittedJobInfo(job, external_jobid=f"{engine.name}:{number}.{i}",
                                    aux={"handle": handle, "task": i})
            try:
                self.report_job_submission(info)
            except Exception as e:  # never lose a job: it is still checked and reported
                self.logger.error(f"poolparty: could not register {self._job_label(job)}: {e}")

    # -- status --------------------------------------------------------------------------------
    async def check_active_jobs(
            self, active_jobs: List[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        """Reads the batch handles only (no scheduler call); reports or yields every job; never raises.

        On a cluster, finished jobs are reported in bursts: while results keep arriving (each less than
        ``quiet`` seconds after the previous one, for at most ``cap`` seconds) they are held back, so
        that the jobs they make ready reach ``run_jobs`` together and leave as one array.
        """
        self._wake.clear()
        self._holding = False
        now = time.monotonic()
        finished = []
        for info in active_jobs:
            try:
                outcome = self._outcome(info, now)
            except Exception as e:
                outcome = ("internal", e)
            if outcome is None:
                yield info
            else:
                info.aux.setdefault("finished_at", now)
                finished.append((info, outcome))
        if finished:
            quiet, cap = REPORT_BURST if self._burst else (0.0, 0.0)
            newest = max(info.aux["finished_at"] for info, _ in finished)
            oldest = min(info.aux["finished_at"] for info, _ in finished)
            if now - newest < quiet and now - oldest < cap:
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

    def _outcome(self, info: SubmittedJobInfo, now: float) -> Optional[tuple]:
        """None while the job runs; else ("ok", None) or ("error", exception or None)."""
        handle, task = info.aux["handle"], info.aux["task"]
        try:
            ok, value = handle.outcome(task)
        except KeyError:  # no result yet
            if handle.done():
                return ("error", handle.error)
            if not self._engine_alive():
                return ("internal", RuntimeError("the poolparty engine stopped before this job finished"))
            return None
        if ok:
            return ("ok", None)
        # the rule failed: its log follows its result in the store, normally in the same instant
        if not handle.done():
            from poolparty.store.logs import chunk_log_text

            first = info.aux.setdefault("failed_seen", now)
            if now - first < LOG_WAIT and chunk_log_text(handle, task) is None:
                self._holding = True
                return None
        return ("error", value)

    def _engine_alive(self) -> bool:
        thread = getattr(getattr(self._engine, "dispatcher", None), "_thread", None)
        return thread is None or thread.is_alive()

    def _report_failure(self, info: SubmittedJobInfo, handle: Any, task: int, error: Any) -> None:
        from concurrent.futures import CancelledError

        from poolparty import CommandFailed, RetryLimitExceeded
        from poolparty.store.logs import chunk_log_text

        if isinstance(error, CommandFailed):
            msg = f"poolparty job {info.external_jobid} exited with status {error.returncode}. "
        elif isinstance(error, RetryLimitExceeded):
            why = error.failures.get(task, "infrastructure failures")
            msg = (f"poolparty gave up on job {info.external_jobid} after "
                   f"{self.settings.max_resubmissions} resubmission(s): {why}. ")
        elif isinstance(error, CancelledError):
            msg = f"poolparty job {info.external_jobid} was cancelled ({error}). "
        elif error is None:
            msg = f"poolparty job {info.external_jobid} ended without a result. "
        else:
            msg = f"poolparty job {info.external_jobid} failed: {error}. "
        try:
            text = chunk_log_text(handle, task)
        except Exception as e:
            text = f"(poolparty: could not read the stored job log: {e})"
        path = self._write_log(info, msg, text, handle)
        self._report_error(info, msg, aux_logs=[str(path)] if path else [])

    def _write_log(self, info: SubmittedJobInfo, msg: str, text: Optional[str], handle: Any) -> Optional[Path]:
        job = info.job
        name = f"{_safe(job.name)}.{_safe(job.jobid)}.attempt{getattr(job, 'attempt', 1)}.log"
        try:
            assert self._run_logs is not None
            self._run_logs.mkdir(parents=True, exist_ok=True)
            path = self._run_logs / name
            header = (f"# {msg.strip()}\n# Snakemake job {job.jobid} ({job.name}), poolparty batch directory "
                      f"{handle.work_dir}/batches (kept after a failure)\n")
            body = text if text is not None else "(poolparty: no scheduler log was stored for this job)\n"
            path.write_text(header + body, errors="replace")
            return path
        except Exception as e:
            self.logger.error(f"poolparty: could not write the log of {self._job_label(job)}: {e}")
            return None

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
        pause = MIN_STATUS_PAUSE if self._holding else max(MIN_STATUS_PAUSE, float(configured or 0))
        deadline = time.monotonic() + pause
        await asyncio.sleep(MIN_STATUS_PAUSE)
        while time.monotonic() < deadline and not self._wake.is_set():
            with self.lock:
                if not self.wait:
                    return
            await asyncio.sleep(0.05)

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
            if cancel or (cancel is None and engine.dispatcher.busy):
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
