"""``PoolPartyTaskRunner``: Prefect task runs as SLURM / SGE / local array jobs.

The runner translates; the poolparty core (:class:`poolparty.Engine`) schedules. Per flow run
(Prefect enters a ``duplicate()`` of the runner for each one) it creates, on the first submission,
one engine with its own work_dir and job name, so that cancelling the flow run cancels exactly its
jobs. Nothing is created before that: Prefect also duplicates and enters the runner on the compute
node (the flow travels inside the serialized context), where it must be cheap and must not submit.
There, task runs submitted from inside a task run in-process, on a thread pool.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from prefect.futures import PrefectConcurrentFuture, PrefectFuture, PrefectFutureList
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from poolparty import Engine, Resources
from poolparty.api.options import build_engine_options
from poolparty.errors import ConfigurationError, UnknownResourceError

from . import job
from .resources import resources_from_tags

#: Prefect's own words for a runner used before ``__enter__`` (``ThreadPoolTaskRunner.submit``).
NOT_STARTED = ("Task runner is not started: enter it first (`with PoolPartyTaskRunner(...) as runner:`), "
               "or pass it to a flow (`@flow(task_runner=PoolPartyTaskRunner(...))`)")

_CONFIG = ("queue", "max_running", "relay", "tasks_per_job", "coalesce_window", "relay_interval", "options")


class PoolPartyTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Run each task run of a flow as a job of an array on SLURM, SGE or the local queue.

    Args:
        queue: ``"local"`` (default, or ``$POOLPARTY_QUEUE``), ``"slurm"``, ``"sge"``, or a
            zero-argument callable returning a :class:`poolparty.queues.base.QueueAdapter`.
        max_running: jobs of this flow run running at once (default: CPUs locally, 100 on a cluster).
        relay: ``True`` (default): jobs need no network path to the Prefect API; their states and
            logs reach it through the work_dir, relayed by this runner. ``False``: jobs talk to the
            API themselves (``PREFECT_API_URL`` must be reachable from the nodes).
        tasks_per_job: task runs packed into one job (one array element). Default: as many as
            spread a burst over ``max_running`` jobs (a ``.map`` over 1,000 with ``max_running=50``
            runs 20 per job); 1 gives every task run its own job.
        coalesce_window: seconds a single ``submit`` waits for more to share its array.
        relay_interval: seconds between looks at the relay files while nothing finishes.
        **options: poolparty pool options (``work_root``, ``keep_work_dir``, ``python_path``,
            ``polling_interval``, ``max_resubmissions``, ``retry``, ``verbose``, ``scheduler_timeout``)
            and default resources of every job (``cpus``, ``memory``, ``walltime``, ``partition``,
            ``account``, ``qos``, ``gpus``, ``extra``). Per task: tags ``poolparty:<name>=<value>``.
    """

    def __init__(self, queue: str | Callable[[], Any] | None = None, max_running: int | None = None, *,
                 relay: bool = True, tasks_per_job: int | None = None, coalesce_window: float | None = None,
                 relay_interval: float | None = None, **options: Any):
        super().__init__()
        if "work_dir" in options:
            raise ConfigurationError("PoolPartyTaskRunner takes work_root (each flow run gets its own directory "
                                     "under it), not work_dir")
        if tasks_per_job is not None and (not isinstance(tasks_per_job, int) or tasks_per_job < 1):
            raise ConfigurationError(f"tasks_per_job={tasks_per_job!r} must be a positive integer")
        _check_options(options)
        self.queue = queue
        self.max_running = max_running
        self.relay = relay
        self.tasks_per_job = tasks_per_job
        self.coalesce_window = coalesce_window
        self.relay_interval = relay_interval
        self.options = dict(options)
        self.reports: list[dict[str, Any]] = []  # one per flow run that submitted, shared by duplicates
        self._reset()

    def _reset(self) -> None:
        self._submitter: Any = None
        self._session_lock = threading.Lock()
        self._in_process: ThreadPoolTaskRunner | None = None

    # -- configuration --------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CONFIG}

    def duplicate(self) -> "PoolPartyTaskRunner":
        config = self._config()
        new = type(self)(**{k: v for k, v in config.items() if k != "options"}, **config["options"])
        new.reports = self.reports
        return new

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._config() == self._config()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        """Configuration only: the runner travels to the nodes inside the flow."""
        state = self._config()
        if callable(state["queue"]):
            state["queue"] = None  # a node never submits
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        TaskRunner.__init__(self)
        for name in _CONFIG:
            setattr(self, name, state.get(name))
        self.options = dict(self.options or {})
        self.reports = []
        self._reset()

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "PoolPartyTaskRunner":
        super().__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        """A flow run that ends normally waits for every task run it submitted (un-awaited ones too);
        one that raised (an exception, Ctrl-C, SIGTERM) cancels the jobs still queued or running."""
        try:
            if self._in_process is not None:
                self._in_process.__exit__(exc_type, exc_value, traceback)
                self._in_process = None
            submitter = self._submitter
            if submitter is not None:
                try:
                    if exc_type is None:
                        submitter.wait_all()
                    else:
                        submitter.cancel(f"the flow run raised {exc_type.__name__}")
                except BaseException as e:  # Ctrl-C while waiting
                    submitter.cancel(f"{type(e).__name__} while waiting for the task runs")
                    raise
                finally:
                    self._close_session()
        finally:
            super().__exit__(exc_type, exc_value, traceback)

    def cancel_all(self) -> None:
        """Cancel every job of this flow run (Prefect calls this on SIGTERM / flow cancellation)."""
        submitter = self._submitter
        if submitter is not None:
            submitter.cancel("cancel_all")
        if self._in_process is not None:
            self._in_process.cancel_all()

    def _close_session(self) -> None:
        with self._session_lock:
            submitter, self._submitter = self._submitter, None
        if submitter is not None:
            submitter.close()
            self.reports.append(submitter.report())

    def _session(self) -> Any:
        with self._session_lock:
            if self._submitter is None:
                from .internals import check
                from .submitter import Submitter

                check()  # a Prefect that moved a hook the relay needs fails here, not on every node

                if not self.relay:
                    from prefect.settings import get_current_settings

                    if not get_current_settings().api.url:
                        raise ConfigurationError(
                            "relay=False needs PREFECT_API_URL, a Prefect server the compute nodes can reach; "
                            "this flow runs on a temporary local server that only this process sees. Set "
                            "PREFECT_API_URL, or keep relay=True (the default).")
                queue = self.queue() if callable(self.queue) else self.queue
                engine = Engine(build_engine_options(self.max_running, {**self.options, "queue": queue}))
                local = engine.queue.runs_on_this_host
                window = self.coalesce_window if self.coalesce_window is not None else (0.05 if local else 0.5)
                interval = self.relay_interval if self.relay_interval is not None else (0.5 if local else 2.0)
                try:
                    self._submitter = Submitter(engine, relay=self.relay, tasks_per_job=self.tasks_per_job,
                                                window=window, relay_interval=interval)
                except BaseException:
                    engine.terminate("runner start failed")
                    raise
            return self._submitter

    @property
    def engine(self) -> Engine | None:
        """The poolparty engine of the current flow run (None before its first submission)."""
        return self._submitter.engine if self._submitter is not None else None

    # -- submission -----------------------------------------------------------------------------
    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Iterable[PrefectFuture[Any]] | None = None,
               dependencies: dict[str, Any] | None = None) -> PrefectConcurrentFuture[Any]:
        if not self._started:
            raise RuntimeError(NOT_STARTED)
        if job.ON_COMPUTE_NODE:
            return self._local_runner().submit(task, parameters, wait_for, dependencies)
        submitter = self._session()
        tags = _tags_of(task)
        resources = resources_from_tags(tags, submitter.engine.options.resources)
        task_run_id, future = submitter.submit(task, parameters, wait_for, dependencies, resources, tags)
        return PrefectConcurrentFuture(task_run_id=task_run_id, wrapped_future=future)

    def map(self, task: Any, parameters: dict[str, Any],
            wait_for: Iterable[PrefectFuture[Any]] | None = None) -> PrefectFutureList[PrefectConcurrentFuture[Any]]:
        if self._started and job.ON_COMPUTE_NODE:
            return self._local_runner().map(task, parameters, wait_for)
        if not self._started:
            raise RuntimeError(NOT_STARTED)
        with self._session().holding():  # every item of the map leaves in one array
            return super().map(task, parameters, wait_for)

    def _local_runner(self) -> ThreadPoolTaskRunner:
        if self._in_process is None:
            self._in_process = ThreadPoolTaskRunner().__enter__()
        return self._in_process


def _check_options(options: dict[str, Any]) -> None:
    """Unknown names and bad resource values fail when the runner is made; the rest (the
    configuration file, the queue) is read when a flow run first submits, never on a node."""
    from poolparty.api.options import ENGINE_KEYWORDS

    unknown = sorted(set(options) - set(ENGINE_KEYWORDS) - set(Resources.names()))
    if unknown:
        raise UnknownResourceError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; pool options are: "
            f"{', '.join(k for k in ENGINE_KEYWORDS if k != 'work_dir')}; resource names are: "
            f"{', '.join(Resources.names())}")
    Resources.from_mapping({k: v for k, v in options.items() if k in Resources.names()})


def _tags_of(task: Any) -> frozenset[str]:
    from prefect.context import TagsContext

    return frozenset(task.tags) | frozenset(TagsContext.get().current_tags)

