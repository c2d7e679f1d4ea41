"""The adapter interface: submit arrays, query the pool's jobs in one call, cancel, and the scheduler
facts the rest of poolparty asks about (defaults, workflow resource names, limits). Raw scheduler states
are translated into :class:`~poolparty.queues.states.JobState` inside each adapter."""
from __future__ import annotations

import abc
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, ClassVar, Mapping, Sequence

from poolparty.errors import ConfigurationError, SchedulerCommandError
from poolparty.queues.accounting import Accounting, JobUsage
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.states import JobStatus
from poolparty.resources import Resources
from poolparty.store.layout import job_log_name

if TYPE_CHECKING:
    from poolparty.queues.cli import SchedulerCLI
    from poolparty.queues.limits import SchedulerReport


def current_user() -> str:
    """The login name of this process's uid (not $USER, which the environment may set to anything)."""
    import os
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


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
    #: one scheduler query answers for every poolparty job of the user (:meth:`query_user`): all pools
    #: of the user on this host then share one status snapshot (queues/shared_status.py); the local
    #: queue has no scheduler to spare
    shares_status: bool = False
    #: environment variables that choose which scheduler the commands talk to: part of the snapshot's scope
    scope_env: tuple[str, ...] = ()
    #: the scheduler commands the adapter runs: each must be on PATH
    commands: tuple[str, ...] = ()
    #: options poolparty sets on the submit command itself: a raw flag repeating one breaks the submission
    reserved_flags: tuple[str, ...] = ()
    #: workflow resource names (Snakemake's) only this scheduler understands; other queues ignore them
    workflow_names: tuple[str, ...] = ()
    #: scheduler-named workflow resources that stand for a portable field, and the name of raw flags
    workflow_renames: ClassVar[Mapping[str, str]] = {}
    workflow_extra: ClassVar[str | None] = None
    #: the command that says what ended jobs used (sacct, qacct ...); None: the workers measure themselves
    accounting_command: ClassVar[str | None] = None

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
    def account(cls, name: str, job_ids: Sequence[str], cli: "SchedulerCLI") -> Accounting:
        """What the pool's jobs (``job_ids``: its submissions; ``name``: its job name) used and were given,
        in ONE accounting call; where the scheduler keeps no accounting, why not (the report then falls
        back on what the workers measured themselves)."""
        command = cls.accounting_command
        if command is None:
            return Accounting({}, "worker")
        try:
            cli.require(command, cls.name)
            # rc 1 is an answer too: qacct's "job id not found", sacct's "accounting storage is disabled"
            proc = cli.run(cls.accounting_argv(name, job_ids), ok_codes=(0, 1))
        except (ConfigurationError, SchedulerCommandError) as e:
            return Accounting({}, command, str(e).strip().splitlines()[0])
        if proc.returncode != 0:
            return Accounting({}, command, cls.accounting_refusal(proc.stderr or proc.stdout))
        return Accounting(cls.parse_accounting(proc.stdout, name), command)

    @classmethod
    def accounting_argv(cls, name: str, job_ids: Sequence[str]) -> list[str]:
        """The one accounting command for these submissions of the pool named ``name``."""
        raise NotImplementedError(f"{cls.name} has no accounting command")

    @classmethod
    def parse_accounting(cls, text: str, name: str) -> dict[str, JobUsage]:
        """The accounting command's output -> {element id: usage} of the jobs named ``name``."""
        raise NotImplementedError(f"{cls.name} has no accounting command")

    @classmethod
    def accounting_refusal(cls, text: str) -> str | None:
        """Why the accounting command (exit status 1) gave nothing: None when it only knew no job yet."""
        return text.strip().splitlines()[0] if text.strip() else None

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

    def query_awaiting(self, name: str, awaited: AbstractSet[str]) -> dict[str, JobStatus]:
        """The dispatcher's poll: :meth:`query`, told which elements' ends it still waits for (their
        chunk has no result). An adapter that asks a second source how jobs that left the queue ended
        (SGE's ``qacct``) asks it only about these."""
        return self.query(name)

    def query_user(self) -> dict[str, dict[str, JobStatus]]:
        """States of every poolparty job of the current user, by pool name (job name), in ONE scheduler
        call; only where :attr:`shares_status`."""
        raise NotImplementedError(f"queue {self.name!r} has no per-user status query")

    def settle(self, name: str, live: dict[str, JobStatus], awaited: AbstractSet[str]) -> dict[str, JobStatus]:
        """The pool's states from what the status query listed: the list itself, unless the scheduler
        must be asked how ``awaited`` jobs that left it ended (SGE's qacct)."""
        return live

    def status_scope(self) -> str:
        """A short name of the scheduler instance the commands reach (its commands' paths and the
        environment that selects it): pools share a snapshot only with pools of the same scheduler."""
        import hashlib
        import os
        import shutil

        words = [self.name, *(shutil.which(c) or c for c in self.commands),
                 *(os.environ.get(v, "") for v in self.scope_env)]
        return f"{self.name}-{hashlib.sha1(chr(0).join(words).encode()).hexdigest()[:12]}"

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
