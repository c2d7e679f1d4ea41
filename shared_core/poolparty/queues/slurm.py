"""SLURM: ``sbatch --array``, one ``squeue --name`` per poll, ``scancel``, ``scontrol``; what SLURM
reports to ``poolparty doctor``; the SLURM-only workflow resource names. The argv rendering and the
parsing of SLURM's output are pure functions of this module."""
from __future__ import annotations

import getpass
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from poolparty.errors import ConfigurationError, SchedulerCommandError, SubmissionError
from poolparty.queues.arrays import compress_indices, parse_indices
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted
from poolparty.store.layout import job_log_name
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.limits import SchedulerReport, doctor_cli, first_line, scheduler_config, table_row
from poolparty.queues.resource_check import ResourceVerifier
from poolparty.queues.states import JobState, JobStatus
from poolparty.resources import Resources

#: squeue's and sacct's job states (sacct writes "CANCELLED by 0", squeue "COMPLETING+" on a federation)
TRANSLATE_TABLE = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED, "REQUEUE_HOLD": JobState.HELD, "SPECIAL_EXIT": JobState.HELD,
    "RESV_DEL_HOLD": JobState.HELD, "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "RESIZING": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED, "STOPPED": JobState.SUSPENDED, "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "CANCELLED": JobState.CANCELLED, "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT, "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY, "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED, "BOOT_FAIL": JobState.BOOT_FAIL, "REVOKED": JobState.CANCELLED,
}
#: the reason refines a state: a hold is waited on, never an error; a launch failure never started
REFINED_BY_REASON = {
    (JobState.PENDING, "JobHeldUser"): JobState.HELD, (JobState.PENDING, "JobHeldAdmin"): JobState.HELD,
    (JobState.PENDING, "job requeued in held state"): JobState.HELD,
    (JobState.FAILED, "JobLaunchFailure"): JobState.LAUNCH_FAILED,
}
INDEX_ENV = "SLURM_ARRAY_TASK_ID"
SQUEUE_FORMAT = "%F|%K|%T|%r"  # array job id | task index (N/A for a plain job) | state | reason


def translate_state(raw_state: str, reason: str) -> JobState:
    """A raw squeue/sacct state and its reason -> JobState (an unknown state counts as a failure)."""
    state = TRANSLATE_TABLE.get(raw_state.split()[0].rstrip("+"), JobState.FAILED)
    return REFINED_BY_REASON.get((state, reason), state)


def slurm_time(seconds: int) -> str:
    """``D-HH:MM:SS``: exact to the second (``--time`` in plain minutes would round)."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}"


def resource_flags(r: Resources) -> list[str]:
    flags: list[str] = []
    if r.cpus is not None:
        flags.append(f"--cpus-per-task={r.cpus}")
    if r.memory is not None:
        flags.append(f"--mem={max(1, math.ceil(r.memory / 1024**2))}M")
    if r.walltime is not None:
        flags.append(f"--time={slurm_time(r.walltime)}")
    if r.partition:
        flags.append(f"--partition={r.partition}")
    if r.account:
        flags.append(f"--account={r.account}")
    if r.qos:
        flags.append(f"--qos={r.qos}")
    if r.gpus:
        flags.append(f"--gpus={r.gpus}")
    return flags


def sbatch_argv(request: ArrayRequest, chunk: int | None = None) -> list[str]:
    """The ``sbatch`` command of the request's array, or (``chunk`` given) of one plain job running it."""
    base = ["sbatch", "--parsable", f"--job-name={request.name}", "--export=ALL",
            f"--chdir={request.workdir}", "--open-mode=append", *resource_flags(request.resources)]
    if request.warning_lead:  # B: the batch shell, which the job script exec's into the worker (no steps)
        base.append(f"--signal=B:USR2@{request.warning_lead}")
    # the user's extra flags come last: they override ours (sbatch and qsub keep the last value)
    if chunk is not None:
        return [*base, f"--output={request.log_dir}/{job_log_name('%j')}", *request.resources.extra,
                str(request.script), *request.worker_argv, "--chunk", str(chunk)]
    part = request.part
    spec = compress_indices(part.indices)
    if request.throttle < len(part.indices):
        spec += f"%{request.throttle}"
    return [*base, f"--array={spec}", f"--output={request.log_dir}/{job_log_name('%A_%a')}", *request.resources.extra,
            str(request.script), *request.worker_argv, "--offset", str(part.offset), "--index-env", INDEX_ENV]


def dry_run_argv(resources: Resources, script: Path, workdir: Path) -> list[str]:
    """``sbatch --test-only``: slurmctld validates the request against partitions and nodes, queues nothing."""
    return ["sbatch", "--test-only", f"--chdir={workdir}", "--output=/dev/null", *resource_flags(resources),
            *resources.extra, str(script)]


def parse_sbatch(out: str, argv: Sequence[str]) -> str:
    """``sbatch --parsable`` prints ``jobid`` or ``jobid;cluster``."""
    job = out.strip().split(";")[0].strip()
    if not job.isdigit():
        raise SubmissionError(list(argv), 0, f"unexpected sbatch output {out.strip()!r}", 1)
    return job


def parse_squeue(out: str) -> dict[str, JobStatus]:
    """``squeue --array --format=%F|%K|%T|%r`` -> {element id: status}. An element is ``job`` (plain) or
    ``job_index``; a collapsed range of pending tasks (``4-9%2``, as printed without ``--array``) is
    expanded to its elements."""
    states: dict[str, JobStatus] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        array_id, index, raw, reason = parts
        # squeue says "None" when it has no reason: at this door it becomes no reason at all
        status = JobStatus(translate_state(raw, reason), "" if reason == "None" else reason)
        if index in ("N/A", ""):
            states[array_id] = status
            continue
        for i in parse_indices(index.split("%")[0]):
            states[f"{array_id}_{i}"] = status
    return states


def parse_max_array_index(config: str) -> int:
    """``scontrol show config`` -> the highest array index allowed (MaxArraySize - 1)."""
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(m.group(1)) - 1 if m else 1000  # SLURM's default MaxArraySize is 1001


class SlurmReport(SchedulerReport):
    partition_word: ClassVar[str] = "partition"
    name_columns: ClassVar[Mapping[str, tuple[str, ...]]] = {"association": ("Account", "Partition"),
                                                             "qos": ("Name",)}
    labelled_kinds: ClassVar[tuple[str, ...]] = ("association",)
    hidden_columns: ClassVar[tuple[str, ...]] = ("QOS",)  # an association's QOS list: read from its qos rows

    def notes(self) -> list[str]:
        size = self.limits.get("MaxArraySize", "")
        return [f"arrays: indices 0..{int(size) - 1} (poolparty splits larger maps)"] if size.isdigit() else []


class SlurmQueue(QueueAdapter):
    name = "slurm"
    index_env = INDEX_ENV
    first_index = 0
    result_grace = 15.0
    vanish_grace = 30.0
    min_poll_interval = 2.0
    commands = ("sbatch", "squeue", "scancel", "scontrol")
    reserved_flags = ("--job-name", "-J", "--array", "-a", "--output", "-o", "--error", "-e", "--chdir", "-D",
                      "--parsable", "--export", "--wrap", "--open-mode")
    workflow_names = ("slurm_partition", "slurm_account", "qos", "constraint", "gres", "gpu_model", "slurm_extra")

    def __init__(self, cli: SchedulerCLI):
        self.require_commands(cli)
        self.cli = cli
        self._max_index: int | None | bool = False
        self._verifier = ResourceVerifier(cli, self.name)

    def manual_cancel(self, name: str) -> str:
        return f"scancel --name={name}"

    def max_array_index(self) -> int | None:
        if self._max_index is False:
            self._max_index = parse_max_array_index(self.cli.run(["scontrol", "show", "config"]).stdout)
        return self._max_index  # type: ignore[return-value]

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        part = request.part
        if not array:
            out = []
            for chunk in part.chunks:
                job = self._sbatch(sbatch_argv(request, chunk))
                out.append(Submitted(job, {chunk: job}))
            return out
        job = self._sbatch(sbatch_argv(request))
        return [Submitted(job, {part.offset + i: f"{job}_{i}" for i in part.indices})]

    def _sbatch(self, argv: list[str]) -> str:
        return parse_sbatch(self.cli.run(argv, submission=True).stdout, argv)

    def query(self, name: str) -> dict[str, JobStatus]:
        return parse_squeue(self.cli.run(["squeue", "--noheader", "--array", "--states=all", f"--name={name}",
                                          f"--format={SQUEUE_FORMAT}"]).stdout)

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        if name is not None:  # filters are ANDed: cancel by name alone catches every job of the pool
            self.cli.run(["scancel", f"--name={name}"])
        elif job_ids:
            self.cli.run(["scancel", *job_ids])

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.cli.run(["scontrol", "update", f"JobId={job_id}", f"ArrayTaskThrottle={throttle}"],
                     ok_codes=(0, 1))
        return True

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        self._verifier.check(resources, dry_run_argv(resources, script, workdir),
                             lambda: self._partition_limits(resources.partition))

    def _partition_limits(self, partition: str | None) -> str:
        """The partition's limits and its largest node, as scontrol reports them."""
        rows = [dict(w.split("=", 1) for w in line.split() if "=" in w)
                for line in self.cli.run(["scontrol", "show", "partition", "-o"]).stdout.splitlines()]
        rows = [r for r in rows if (r.get("PartitionName") == partition if partition else r.get("Default") == "YES")]
        if not rows:
            return f"no partition named {partition!r}" if partition else ""
        p = rows[0]
        text = (f"partition {p.get('PartitionName')}: MaxTime={p.get('MaxTime', '?')} "
                f"MaxCPUsPerNode={p.get('MaxCPUsPerNode', '?')} MaxMemPerNode={p.get('MaxMemPerNode', '?')} "
                f"TRES={p.get('TRES', '?')}")
        nodes = p.get("Nodes")
        if nodes and nodes != "(null)":
            out = self.cli.run(["scontrol", "show", "node", "-o", nodes]).stdout
            cpus = [int(m) for m in re.findall(r"\bCPUTot=(\d+)", out)]
            mem = [int(m) for m in re.findall(r"\bRealMemory=(\d+)", out)]
            if cpus and mem:
                text += f"; largest node: {max(cpus)} CPUs, {max(mem)} MB"
        return text

    @classmethod
    def translate_workflow(cls, given: Mapping[str, Any], fields: dict[str, Any],
                           base: Resources) -> tuple[dict[str, Any], tuple[str, ...]]:
        fields = {**fields, **{field_name: str(given[name]) for name, field_name in (
            ("slurm_partition", "partition"), ("slurm_account", "account"), ("qos", "qos")) if name in given}}
        extra = list(base.extra)
        if "constraint" in given:
            extra.append(f"--constraint={given['constraint']}")
        if "gres" in given:
            extra.append(f"--gres={given['gres']}")
        if "gpu_model" in given:  # --gpus=<type>:<count> (sbatch(1)); the count defaults to one
            extra.append(f"--gpus={given['gpu_model']}:{fields.pop('gpus', None) or 1}")
        # tasks of a parallel job (validated by poolparty.api.workflow_resources.task_layout); an MPI
        # rule starts them itself with its launcher (srun/mpirun), inside this allocation
        for name, flag in (("nodes", "--nodes"), ("tasks", "--ntasks"), ("tasks_per_node", "--ntasks-per-node")):
            if name in given:
                extra.append(f"{flag}={given[name]}")
        if "slurm_extra" in given:
            extra += cls.raw_flags("slurm_extra", given["slurm_extra"])
        return fields, tuple(extra)

    @classmethod
    def limits_report(cls, timeout: float = 15.0) -> SlurmReport:
        """MaxArraySize, MaxJobCount, partitions, and association/QOS limits of the current user."""
        cli = doctor_cli(timeout)
        report = SlurmReport(cls.name, True)
        config = scheduler_config(cls, report, ["scontrol", "show", "config"], "=", cli)
        if config is None:
            return report
        for key in ("SLURM_VERSION", "ClusterName", "MaxArraySize", "MaxJobCount", "MinJobAge"):
            if key in config:
                report.limits[key] = config[key]
        try:
            for line in cli.run(["scontrol", "show", "partition", "-o"]).stdout.splitlines():
                fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
                report.partitions.append({k: fields.get(k, "?") for k in (
                    "PartitionName", "State", "MaxTime", "MaxNodes", "MaxCPUsPerNode", "MaxMemPerNode",
                    "TotalCPUs")})
        except SchedulerCommandError as e:
            report.partitions.append({"error": first_line(e)})
        _read_user_limits(cli, report)
        return report


def _read_user_limits(cli: SchedulerCLI, report: SlurmReport) -> None:
    """The user's associations and the QOS limits, from sacctmgr (absent without accounting)."""
    user = getpass.getuser()
    try:
        cli.require("sacctmgr", "slurm")
        names = ("Account", "Partition", "MaxJobs", "MaxSubmit", "MaxTRES", "MaxWall", "GrpJobs", "GrpSubmit", "QOS")
        assoc = cli.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", f"format={','.join(names)}"]).stdout
        for line in assoc.splitlines():
            if line.strip():
                report.user_limits.append({"kind": "association", **table_row(names, line)})
        qos_names = ("Name", "MaxJobsPU", "MaxSubmitPU", "MaxTRESPU", "MaxWall")
        qos = cli.run(["sacctmgr", "-n", "-P", "show", "qos", f"format={','.join(qos_names)}"]).stdout
        for line in qos.splitlines():
            if line.strip():
                report.user_limits.append({"kind": "qos", **table_row(qos_names, line)})
        if not report.user_limits:
            report.user_limits_note = f"no association for user {user} (accounting may be off)"
    except (ConfigurationError, SchedulerCommandError) as e:
        report.user_limits_note = f"not readable: {first_line(e)}"
