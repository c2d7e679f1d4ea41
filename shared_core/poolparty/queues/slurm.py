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
from poolparty.queues.accounting import JobUsage, clock_seconds, size_bytes
from poolparty.queues.arrays import compress_indices, parse_indices
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted, current_user
from poolparty.store.layout import JOB_NAME_PREFIX, job_log_name
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
#: the per-user query adds the job name, last: a name (another tool's) may itself hold a "|"
USER_SQUEUE_FORMAT = SQUEUE_FORMAT + "|%j"


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
        if len(parts) == 4:
            states.update(squeue_elements(*parts))
    return states


#: sacct's fields for the efficiency report (sacct(1)): CPUTimeRAW is elapsed x allocated cores, TotalCPU the
#: user + system time of every step, MaxRSS is on the steps (the batch step), TimelimitRaw in minutes
SACCT_FIELDS = "JobID,State,ElapsedRaw,TotalCPU,CPUTimeRAW,AllocCPUS,ReqMem,MaxRSS,TimelimitRaw"


def sacct_argv(job_ids: Sequence[str]) -> list[str]:
    """ONE ``sacct`` for every submission of the pool (an array's id covers its tasks); --noconvert
    writes MaxRSS in bytes."""
    return ["sacct", "--parsable2", "--noheader", "--noconvert", f"--jobs={','.join(job_ids)}",
            f"--format={SACCT_FIELDS}"]


def parse_sacct_usage(text: str) -> dict[str, JobUsage]:
    """``sacct --parsable2 --noheader --noconvert --format=SACCT_FIELDS`` -> {element id: usage}. A job's
    row has the element id (``6505_1``, ``6508``); its steps (``6505_1.batch``) hold the peak memory."""
    jobs: dict[str, list[str]] = {}
    peaks: dict[str, int] = {}
    for line in text.splitlines():
        f = line.strip().split("|")
        if len(f) != 9 or not f[0]:
            continue
        element, _, step = f[0].partition(".")
        if step:
            rss = size_bytes(f[7])
            if rss is not None:
                peaks[element] = max(peaks.get(element, 0), rss)
        elif "[" not in element:  # "6505_[2-7]": tasks that never started
            jobs[element] = f
    out = {}
    for element, (_, state, elapsed, total_cpu, _cputime, cpus, req_mem, _, limit) in jobs.items():
        n = int(cpus) if cpus.isdigit() else None
        per_cpu = req_mem.endswith("c")  # before 21.08 ReqMem ended in c (per CPU) or n (per node)
        mem = size_bytes(req_mem.rstrip("cn"), "M")
        out[element] = JobUsage(element, translate_state(state or "?", "").value, float(elapsed or 0),
                                clock_seconds(total_cpu) or 0.0, n, peaks.get(element),
                                mem * (n or 1) if mem is not None and per_cpu else mem,
                                float(limit) * 60 if limit.isdigit() else None)
    return out


def squeue_elements(array_id: str, index: str, raw: str, reason: str) -> dict[str, JobStatus]:
    """One squeue row -> {element id: status} (a range of pending tasks gives one entry per task)."""
    # squeue says "None" when it has no reason: at this door it becomes no reason at all
    status = JobStatus(translate_state(raw, reason), "" if reason == "None" else reason)
    if index in ("N/A", ""):
        return {array_id: status}
    return {f"{array_id}_{i}": status for i in parse_indices(index.split("%")[0])}


def user_squeue_argv(user: str) -> list[str]:
    """ONE squeue for every job of ``user`` (finished ones too, within MinJobAge), with its name."""
    return ["squeue", "--noheader", "--array", "--states=all", f"--user={user}", f"--format={USER_SQUEUE_FORMAT}"]


def parse_user_squeue(out: str) -> dict[str, dict[str, JobStatus]]:
    """``squeue --format=%F|%K|%T|%r|%j`` of a user -> {pool name: {element id: status}} for poolparty's
    jobs (names starting ``pp-``); the user's other jobs are left out."""
    pools: dict[str, dict[str, JobStatus]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) == 5 and parts[4].startswith(JOB_NAME_PREFIX):
            pools.setdefault(parts[4], {}).update(squeue_elements(*parts[:4]))
    return pools


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
    shares_status = True
    scope_env = ("SLURM_CONF", "SLURM_CLUSTERS")
    commands = ("sbatch", "squeue", "scancel", "scontrol")
    accounting_command = "sacct"
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

    @classmethod
    def accounting_argv(cls, name: str, job_ids: Sequence[str]) -> list[str]:
        return sacct_argv(job_ids)

    @classmethod
    def parse_accounting(cls, text: str, name: str) -> dict[str, JobUsage]:
        return parse_sacct_usage(text)

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

    def query_user(self) -> dict[str, dict[str, JobStatus]]:
        return parse_user_squeue(self.cli.run(user_squeue_argv(current_user())).stdout)

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        if name is not None:  # filters are ANDed: cancel by name alone catches every job of the pool
            self.cli.run(["scancel", f"--name={name}"], changes_queue=True)
        elif job_ids:
            self.cli.run(["scancel", *job_ids], changes_queue=True)

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.cli.run(["scontrol", "update", f"JobId={job_id}", f"ArrayTaskThrottle={throttle}"],
                     ok_codes=(0, 1), changes_queue=True)
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
