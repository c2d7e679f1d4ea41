"""The adapter interface: submit arrays, query the pool's jobs in one call, cancel, and the scheduler
facts the rest of poolparty asks about (defaults, workflow resource names, limits). Raw scheduler states
are translated into :class:`~poolparty.queues.states.JobState` inside each adapter."""
from __future__ import annotations

import abc
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from poolparty.errors import ConfigurationError
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.states import JobStatus
from poolparty.resources import Resources
from poolparty.store.layout import job_log_name

if TYPE_CHECKING:
    from poolparty.queues.cli import SchedulerCLI
    from poolparty.queues.limits import SchedulerReport


@dataclass(frozen=True)
class ArrayRequest:
    """Everything an adapter needs to submit one array (or, in plain mode, one job per index)."""

    name: str  # the pool's job name: one status query by name covers the whole pool
    part: ArrayPart
    throttle: int  # max elements running at once (SLURM %N, SGE -tc)
    resources: Resources
    script: Path  # the fixed job.sh
    worker_argv: tuple[str, ...]  # without --offset/--index-env/--chunk: the adapter adds them
    workdir: Path  # cwd of the job
    log_dir: Path
    #: seconds before its walltime a job is warned (a signal, see node/walltime.py); None: no warning
    warning_lead: int | None = None


@dataclass
class Submitted:
    """What a submission returned: element id per chunk, as the status query will report it."""

    job_id: str  # what to cancel to remove the whole submission
    elements: dict[int, str] = field(default_factory=dict)  # chunk -> element id


class QueueAdapter(abc.ABC):
    """One scheduler. Subclasses are short: they render arguments and parse outputs, nothing else."""

    name: str = "?"
    #: the environment variable holding the array index inside a job, and the lowest index allowed
    index_env: str = ""
    first_index: int = 0
    #: SGE ``-t`` takes one range per submission
    contiguous_arrays: bool = False
    #: the scheduler limits how many elements of an array run at once; where it cannot (PBS before
    #: 2020), an array is submitted with no more elements than there are free slots
    throttles_arrays: bool = True
    #: seconds a job that ended by itself (completed, failed) may take to show its result file (shared
    #: filesystem latency)
    result_grace: float = 10.0
    #: the same for a job the scheduler ended (cancelled, killed for memory or walltime, node failure,
    #: preemption): its worker almost surely had no time to publish, so waiting long only delays the
    #: resubmission; if a result does land later, the new job skips its tasks and the duplicate is dropped
    killed_result_grace: float = 2.0
    #: seconds a job may be missing from the queue before it counts as vanished
    vanish_grace: float = 30.0
    #: fastest sensible status-poll interval
    min_poll_interval: float = 1.0
    #: upper bound of the adaptive status-poll interval when the user sets none
    default_polling_interval: float = 30.0
    #: how often the dispatcher lists the work_dir for finished chunks (no scheduler call)
    result_check_interval: float = 0.25
    #: how long a single call (``Executor.submit``) waits for more to share its array
    batching_window: float = 0.5
    #: jobs run as processes of this machine (no shared filesystem, no scheduler between us and them)
    runs_on_this_host: bool = False
    #: the scheduler commands the adapter runs: each must be on PATH
    commands: tuple[str, ...] = ()
    #: options poolparty sets on the submit command itself: a raw flag repeating one breaks the submission
    reserved_flags: tuple[str, ...] = ()
    #: workflow resource names (Snakemake's) only this scheduler understands; other queues ignore them
    workflow_names: tuple[str, ...] = ()
    #: scheduler-named workflow resources that stand for a portable field, and the name of raw flags
    workflow_renames: ClassVar[Mapping[str, str]] = {}
    workflow_extra: ClassVar[str | None] = None

    @classmethod
    def from_cli(cls, cli: "SchedulerCLI") -> "QueueAdapter":
        """The adapter, running its scheduler commands through ``cli``."""
        return cls(cli)  # type: ignore[call-arg]

    @classmethod
    def require_commands(cls, cli: "SchedulerCLI") -> None:
        """Raise ConfigurationError, saying what to do, if a command of the scheduler is not on PATH."""
        for program in cls.commands:
            cli.require(program, cls.name)

    @classmethod
    def query_run(cls, run_dir: Path, name: str, cli: "SchedulerCLI") -> dict[str, JobStatus]:
        """The run's jobs, asked from a process that is not its driver (``poolparty status|cancel|clean``):
        one scheduler query by the run's job name."""
        queue = cls.from_cli(cli)
        try:
            return queue.query(name)
        finally:
            queue.close()

    @classmethod
    def limits_report(cls, timeout: float = 15.0) -> "SchedulerReport | None":
        """What the scheduler allows, for ``poolparty doctor``; None where there is no scheduler to ask."""
        return None

    @classmethod
    def translate_workflow(cls, given: Mapping[str, Any], fields: dict[str, Any],
                           base: Resources) -> tuple[dict[str, Any], tuple[str, ...]]:
        """This scheduler's own workflow resource names (``given``: those of :attr:`workflow_names` that
        are set) over the portable ``fields``; returns the fields and the whole list of extra flags. The
        usual translation, declared by an adapter: :attr:`workflow_renames` (``pbs_queue`` ->
        ``partition``) and one name of raw flags, :attr:`workflow_extra` (``pbs_extra``)."""
        fields = {**fields, **{field: str(given[name]) for name, field in cls.workflow_renames.items()
                               if name in given}}
        extra = list(base.extra)
        if cls.workflow_extra is not None and cls.workflow_extra in given:
            extra += cls.raw_flags(cls.workflow_extra, given[cls.workflow_extra])
        return fields, tuple(extra)

    @classmethod
    def raw_flags(cls, name: str, value: Any) -> list[str]:
        """``slurm_extra="--exclusive --nice=10"`` -> one argv item per flag; refuses flags poolparty sets."""
        if isinstance(value, (list, tuple)):
            items = [str(v) for v in value]
        else:
            try:
                items = shlex.split(str(value))
            except ValueError as e:
                raise ConfigurationError(f"resource {name}={value!r} is not valid shell syntax: {e}") from None
        for item in items:
            flag = item.split("=", 1)[0]
            if flag in cls.reserved_flags:
                raise ConfigurationError(
                    f"resource {name}={value!r}: {flag} is set by poolparty itself and cannot be given here")
        return items

    def default_max_running(self) -> int:
        """Elements running at once when the user sets no ``max_running``."""
        return 100

    def default_work_root(self) -> Path:
        """Where fresh run directories go by default: the nodes must see it, and the working directory
        usually is shared."""
        return Path.cwd() / ".poolparty"

    def attach(self, run_dir: Path) -> None:
        """Called once with the pool's run directory (the local queue keeps its state there)."""

    @abc.abstractmethod
    def max_array_index(self) -> int | None:
        """Highest array index the scheduler accepts, or None if unlimited."""

    @abc.abstractmethod
    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        """Submit one array (``array=True``) or one plain job per chunk. Raises SubmissionError."""

    @abc.abstractmethod
    def query(self, name: str) -> dict[str, JobStatus]:
        """States of every job of the pool (by job name), in ONE scheduler call. Keys: element ids."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        """Cancel these jobs/elements (and, with ``name``, any other job of the pool) in one call."""

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        """Change an array's running limit; False where the scheduler cannot."""
        return False

    def manual_cancel(self, name: str) -> str:
        """How a person cancels every job of the pool named ``name`` when poolparty could not."""
        return f"poolparty cancel <work_dir> (every job named {name})"

    def check_interpreter(self, python: str) -> None:
        """Raise :class:`~poolparty.errors.ConfigurationError` if jobs could not start ``python``, where
        that can be known before submitting. On a cluster only the node can tell: a missing interpreter
        there ends the job at once, and the failure says so."""

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        """Raise :class:`~poolparty.errors.ImpossibleResourceError` if the scheduler says a job with
        these resources could never start. Asks without submitting anything; nothing to ask by default."""

    def log_path(self, log_dir: Path, element: str) -> Path:
        """Where the scheduler writes an element's stdout and stderr."""
        return log_dir / job_log_name(element)

    def close(self) -> None:
        """Release resources (the local queue stops its launcher)."""
