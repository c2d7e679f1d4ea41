"""Sun Grid Engine: ``qsub -t``, one ``qstat -xml`` per poll (and ``qacct -j`` for jobs that left it),
``qdel``, ``qconf``; what SGE reports to
``poolparty doctor``; the SGE-only workflow resource names. The argv rendering and the parsing of SGE's
output are pure functions of this module."""
from __future__ import annotations

import math
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import AbstractSet, Any, ClassVar, Mapping, Sequence

from poolparty.errors import SchedulerCommandError, SubmissionError, UnsupportedResourceError
from poolparty.queues.accounting import JobUsage, clock_seconds, size_bytes
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted, current_user
from poolparty.store.layout import JOB_NAME_PREFIX, job_log_name
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.limits import SchedulerReport, doctor_cli, first_line, key_values, scheduler_config
from poolparty.queues.resource_check import ResourceVerifier
from poolparty.queues.states import JobState, JobStatus
from poolparty.resources import Resources, format_hms

#: SGE state letters, most telling first: a code is read by the first row whose letters it all holds
#: (``Eqw`` needs a qdel; ``hqw``/``hr`` are holds, never errors; ``Rq`` waits for its rerun, ``Rr`` runs)
TRANSLATE_TABLE = (
    ("E", JobState.ERROR), ("d", JobState.CANCELLED), ("h", JobState.HELD), ("Rq", JobState.REQUEUED),
    ("R", JobState.RUNNING), ("s", JobState.SUSPENDED), ("S", JobState.SUSPENDED), ("T", JobState.SUSPENDED),
    ("r", JobState.RUNNING), ("t", JobState.RUNNING),
)
#: qacct's ``failed`` codes (SGE 8.1.9 accounting(5) / sge_execd's execution states) that say why a job
#: that left the queue ended; 37 is split into walltime and memory by the job's own limits
FAILED_CODE_TABLE = {
    25: JobState.REQUEUED,  # rescheduling
    26: JobState.LAUNCH_FAILED, 27: JobState.LAUNCH_FAILED, 28: JobState.LAUNCH_FAILED,  # output file, shell, cwd
    30: JobState.FAILED,  # application error returned (exit 100)
}
QACCT_SIGNAL_KILLED = (137, 143)  # 128 + SIGKILL, SIGTERM: qdel or the execd killed it
INDEX_ENV = "SGE_TASK_ID"
QSTAT = ["qstat", "-xml", "-g", "d"]  # -g d: one entry per pending task, where SGE lets it


def translate_state(code: str) -> JobState:
    """SGE state letters (``qw``, ``r``, ``Eqw``, ``hqw``, ``Rq``, ``dr`` ...) -> JobState."""
    for letters, state in TRANSLATE_TABLE:
        if all(letter in code for letter in letters):
            return state
    return JobState.PENDING


def resource_flags(r: Resources, warning_lead: int | None = None) -> list[str]:
    """``warning_lead``: a soft limit ``s_rt`` that long before ``h_rt``, whose SIGUSR1 is the walltime
    warning (``-notify`` sends SIGUSR2 only at h_rt, and delays the kill by the queue's ``notify`` time)."""
    if r.qos:
        raise UnsupportedResourceError(
            f"qos={r.qos!r}: Sun Grid Engine has no QOS; use partition= (an SGE queue) or extra=[...]")
    flags: list[str] = []
    limits: list[str] = []
    slots = r.cpus or 1
    if r.cpus is not None and r.cpus > 1:
        flags += ["-pe", "smp", str(r.cpus)]
    if r.memory is not None:  # h_vmem is per slot
        limits.append(f"h_vmem={max(1, math.ceil(r.memory / slots / 1024**2))}M")
    if r.walltime is not None:
        limits.append(f"h_rt={format_hms(r.walltime)}")
        if warning_lead:
            limits.append(f"s_rt={format_hms(r.walltime - warning_lead)}")
    if r.gpus:
        limits.append(f"gpu={r.gpus}")
    if limits:
        flags += ["-l", ",".join(limits)]
    if r.partition:
        flags += ["-q", r.partition]
    if r.account:
        flags += ["-A", r.account]
    return flags


def qsub_argv(request: ArrayRequest, chunk: int | None = None) -> list[str]:
    """The ``qsub`` command of the request's array, or (``chunk`` given) of one plain job running it."""
    # -V: the driver's environment reaches the job through the scheduler, never through a file
    base = ["qsub", "-terse", "-N", request.name, "-V", "-wd", str(request.workdir), "-j", "y",
            "-r", "y", "-S", "/bin/sh", *resource_flags(request.resources, request.warning_lead)]
    # the user's extra flags come after ours: qsub keeps the last value
    if chunk is not None:
        return [*base, "-o", f"{request.log_dir}/{job_log_name('$JOB_ID')}", *request.resources.extra, str(request.script),
                *request.worker_argv, "--chunk", str(chunk)]
    part = request.part
    lo, hi = min(part.indices), max(part.indices)
    if hi - lo + 1 != len(part.indices):
        raise ValueError("SGE arrays must be contiguous (internal error)")
    return [*base, "-t", f"{lo}-{hi}", "-tc", str(request.throttle),
            "-o", f"{request.log_dir}/{job_log_name('$JOB_ID.$TASK_ID')}", *request.resources.extra, str(request.script),
            *request.worker_argv, "--offset", str(part.offset), "--index-env", INDEX_ENV]


def dry_run_argv(resources: Resources, script: Path, workdir: Path) -> list[str]:
    """``qsub -w v``: the qmaster checks the request against an empty cluster and queues nothing."""
    return ["qsub", "-w", "v", "-wd", str(workdir), "-S", "/bin/sh", "-o", "/dev/null", "-j", "y",
            *resource_flags(resources), *resources.extra, str(script)]


def parse_qsub(out: str, argv: Sequence[str]) -> str:
    """``qsub -terse`` prints ``10`` for a job and ``19.1-8:1`` for an array."""
    job = out.strip().split(".")[0]
    if not job.isdigit():
        raise SubmissionError(list(argv), 0, f"unexpected qsub output {out.strip()!r}", 1)
    return job


def parse_qstat(xml: str, name: str) -> dict[str, JobStatus]:
    """``qstat -xml -g d`` -> {element id: status} of the jobs named ``name``. An element is ``job``
    (plain) or ``job.task``; running jobs sit under ``<queue_info>``, pending ones (``Eqw`` too) under the
    inner ``<job_info>``."""
    states: dict[str, JobStatus] = {}
    for job in ET.fromstring(xml).iter("job_list"):
        if job.findtext("JB_name") == name:
            states.update(job_states(job))
    return states


def job_states(job: ET.Element) -> dict[str, JobStatus]:
    """One ``<job_list>`` entry -> {element id: status}."""
    code = job.findtext("state", "")
    return {e: JobStatus(translate_state(code), code)
            for e in task_elements(job.findtext("JB_job_number", ""), job.findtext("tasks"))}


def parse_user_qstat(xml: str, user: str) -> dict[str, dict[str, JobStatus]]:
    """``qstat -xml -g d`` (qstat lists the caller's jobs unless told ``-u '*'``; a site default may say
    so, hence the owner check) -> {pool name: {element id: status}} of ``user``'s poolparty jobs."""
    pools: dict[str, dict[str, JobStatus]] = {}
    for job in ET.fromstring(xml).iter("job_list"):
        name = job.findtext("JB_name", "")
        if name.startswith(JOB_NAME_PREFIX) and job.findtext("JB_owner") == user:
            pools.setdefault(name, {}).update(job_states(job))
    return pools


def task_elements(number: str, tasks: str | None) -> list[str]:
    """``<tasks>`` is absent (plain job), one id, or a range ``3-8:1`` (collapsed pending tasks)."""
    if not tasks:
        return [number]
    out = []
    for item in tasks.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", item.strip())
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        step = int(m.group(3) or 1)
        out.extend(f"{number}.{i}" for i in range(lo, hi + 1, step))
    return out


def qacct_blocks(text: str) -> list[dict[str, str]]:
    """``qacct -j`` output -> one {field: value} per attempt, oldest first (blocks open with ``====``)."""
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("====="):
            blocks.append({})
        elif blocks and line.strip():
            key, _, value = line.partition(" ")
            blocks[-1][key] = value.strip()
    return blocks


def _limit(category: str, name: str) -> str | None:
    m = re.search(rf"\b{name}=([^,\s]+)", category)
    return m.group(1) if m else None


def _bytes(text: str) -> float:
    """qacct's ``maxvmem 1.953G`` / ``200.000M`` and h_vmem's ``200M`` -> bytes (1024-based)."""
    m = re.fullmatch(r"([\d.]+)\s*([KMGT]?)B?", text.strip(), re.IGNORECASE)
    if not m:
        return 0.0
    return float(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[m.group(2).upper()]


def accounted_state(block: dict[str, str]) -> JobState:
    """One qacct block -> how the attempt ended. ``failed 37`` (qmaster enforced h_rt, h_cpu or h_vmem) is
    out of memory when the job's peak reached its h_vmem, else a walltime kill; ``failed 100`` with
    exit 137/143 is a kill from outside (qdel, the execd)."""
    failed = int((block.get("failed", "0").split() or ["0"])[0])
    status = int((block.get("exit_status", "0").split() or ["0"])[0])
    vmem_limit = _limit(block.get("category", ""), "h_vmem")
    peak_at_limit = bool(vmem_limit) and _bytes(block.get("maxvmem", "0")) >= 0.95 * _bytes(vmem_limit or "0")
    if failed == 37:
        return JobState.OUT_OF_MEMORY if peak_at_limit else JobState.TIMEOUT
    if failed in FAILED_CODE_TABLE:
        return FAILED_CODE_TABLE[failed]
    if failed == 100 and status in QACCT_SIGNAL_KILLED:
        return JobState.OUT_OF_MEMORY if peak_at_limit else JobState.CANCELLED
    if failed:
        return JobState.NODE_FAIL  # before the job ran: prolog, host, execd trouble
    return JobState.COMPLETED if status == 0 else JobState.FAILED


def parse_qacct(text: str) -> dict[str, JobStatus]:
    """``qacct -j <name>`` -> {element id: status of its latest attempt}; ``taskid undefined``: a plain job."""
    out: dict[str, JobStatus] = {}
    for block in qacct_blocks(text):
        number, task = block.get("jobnumber", ""), block.get("taskid", "undefined")
        element = number if task in ("undefined", "") else f"{number}.{task}"
        words = " ".join(f"{k} {block[k]}" for k in ("failed", "exit_status") if k in block)
        out[element] = JobStatus(accounted_state(block), words)
    return out


def parse_qacct_usage(text: str) -> dict[str, JobUsage]:
    """``qacct -j <name>`` -> {element id: usage of its latest attempt}. Peak memory is ``maxvmem`` (what
    h_vmem limits), else ``ru_maxrss``, which qacct prints as a count of KB with a unit of its own
    (``57.816KB`` for 57816 KB, seen on this machine's SGE 8.1.9); h_vmem is per slot."""
    out: dict[str, JobUsage] = {}
    for block in qacct_blocks(text):
        number, task = block.get("jobnumber", ""), block.get("taskid", "undefined")
        element = number if task in ("undefined", "") else f"{number}.{task}"
        slots = int(block.get("slots", "1").split()[0] or 1)
        category = block.get("category", "")
        vmem, rss = size_bytes(block.get("maxvmem", "")), size_bytes(block.get("ru_maxrss", ""))
        per_slot = size_bytes(_limit(category, "h_vmem") or "")
        walltime = _limit(category, "h_rt")
        out[element] = JobUsage(
            element, accounted_state(block).value, clock_seconds(block.get("ru_wallclock", "0").rstrip("s")) or 0.0,
            clock_seconds(block.get("cpu", "0").rstrip("s")) or 0.0, slots,
            vmem if vmem else (rss * 1024 if rss else None), per_slot * slots if per_slot else None,
            clock_seconds(walltime) if walltime else None)
    return out


def parse_max_aj_tasks(config: str) -> int:
    """``qconf -sconf`` -> the highest array task id allowed (``max_aj_tasks``; 0 means SGE's 75000)."""
    m = re.search(r"^max_aj_tasks\s+(\d+)", config, re.MULTILINE)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else 75000


class SgeReport(SchedulerReport):
    partition_word: ClassVar[str] = "queue"
    name_columns: ClassVar[Mapping[str, tuple[str, ...]]] = {"resource quota set": ("name",)}


class SgeQueue(QueueAdapter):
    name = "sge"
    index_env = INDEX_ENV
    first_index = 1
    contiguous_arrays = True
    result_grace = 15.0
    vanish_grace = 30.0
    min_poll_interval = 2.0
    shares_status = True
    scope_env = ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT")
    commands = ("qsub", "qstat", "qdel", "qconf", "qacct")
    accounting_command = "qacct"
    reserved_flags = ("-N", "-t", "-tc", "-o", "-e", "-wd", "-cwd", "-terse", "-j", "-S", "-V", "-sync", "-b")
    workflow_names = ("sge_queue", "sge_pe", "sge_project", "sge_extra")

    def __init__(self, cli: SchedulerCLI):
        self.require_commands(cli)
        self.cli = cli
        self._max_index: int | None | bool = False
        self._verifier = ResourceVerifier(cli, self.name)
        self._left: dict[str, float | None] = {}  # element submitted here -> since when it is out of qstat
        self._ended: dict[str, JobStatus] = {}  # how an element that left the queue ended, from qacct

    def manual_cancel(self, name: str) -> str:
        return f"qdel {name}"

    @classmethod
    def accounting_argv(cls, name: str, job_ids: Sequence[str]) -> list[str]:
        return ["qacct", "-j", name]  # by the pool's name: every job and task of it, in one call

    @classmethod
    def parse_accounting(cls, text: str, name: str) -> dict[str, JobUsage]:
        return parse_qacct_usage(text)

    @classmethod
    def accounting_refusal(cls, text: str) -> str | None:
        return None if "not found" in text else super().accounting_refusal(text)  # lag: none accounted yet

    def max_array_index(self) -> int | None:
        if self._max_index is False:
            self._max_index = parse_max_aj_tasks(self.cli.run(["qconf", "-sconf"]).stdout)
        return self._max_index  # type: ignore[return-value]

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        part = request.part
        if not array:
            out = []
            for chunk in part.chunks:
                job = self._qsub(qsub_argv(request, chunk))
                out.append(Submitted(job, {chunk: job}))
            return out
        job = self._qsub(qsub_argv(request))
        return [Submitted(job, {part.offset + i: f"{job}.{i}" for i in part.indices})]

    def _qsub(self, argv: list[str]) -> str:
        job = parse_qsub(self.cli.run(argv, submission=True).stdout, argv)
        spec = argv[argv.index("-t") + 1] if "-t" in argv else None
        for element in task_elements(job, spec):
            self._left[element] = None
        return job

    def query(self, name: str) -> dict[str, JobStatus]:
        return self.query_awaiting(name, self._left.keys())

    def query_awaiting(self, name: str, awaited: AbstractSet[str]) -> dict[str, JobStatus]:
        return self.settle(name, parse_qstat(self.cli.run(QSTAT).stdout, name), awaited)

    def query_user(self) -> dict[str, dict[str, JobStatus]]:
        return parse_user_qstat(self.cli.run(QSTAT).stdout, current_user())

    def settle(self, name: str, live: dict[str, JobStatus], awaited: AbstractSet[str]) -> dict[str, JobStatus]:
        """qstat shows only queued jobs: a finished one is gone. For ``awaited`` elements submitted here
        that left it without a known end, ONE ``qacct -j <name>`` per poll says how they ended (walltime
        and memory kills, failed 37, escalate as on SLURM); asked until ``2 * vanish_grace`` after they
        left (qacct lags up to its flush_time, 15 s by default). An element whose chunks all have their
        results is not awaited: its end no longer matters, and qacct is not asked for it."""
        now = time.monotonic()
        unknown = []
        for element in list(self._left):
            if element in live:
                self._left[element] = None
                self._ended.pop(element, None)  # back in the queue (rerun): a new end will follow
                continue
            since = self._left[element] = self._left[element] or now
            if element in awaited and element not in self._ended and now - since < 2 * self.vanish_grace:
                unknown.append(element)
        if unknown:
            proc = self.cli.run(["qacct", "-j", name], ok_codes=(0, 1))  # 1: nothing accounted yet
            ends = parse_qacct(proc.stdout)
            self._ended.update({e: ends[e] for e in unknown if e in ends})
        return {**{e: s for e, s in self._ended.items() if e not in live}, **live}

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        targets = [name] if name is not None else list(job_ids)
        if targets:  # qdel exits 1 when a job is already gone: that is fine here
            self.cli.run(["qdel", *targets], ok_codes=(0, 1), changes_queue=True)

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.cli.run(["qalter", "-tc", str(throttle), job_id], ok_codes=(0, 1), changes_queue=True)
        return True

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        self._verifier.check(resources, dry_run_argv(resources, script, workdir),
                             lambda: self._queue_limits(resources))

    def _queue_limits(self, resources: Resources) -> str:
        """Slots, h_rt and h_vmem of the queue, and the slots of the smp parallel environment."""
        queue = resources.partition or "all.q"
        out = self.cli.run(["qconf", "-sq", queue], ok_codes=(0, 1)).stdout
        q = {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}
        text = f"queue {queue}: " + " ".join(f"{k}={q[k].strip()}" for k in ("slots", "h_rt", "h_vmem") if k in q)
        if resources.cpus and resources.cpus > 1:
            pe = self.cli.run(["qconf", "-sp", "smp"], ok_codes=(0, 1)).stdout
            m = re.search(r"^slots\s+(\d+)", pe, re.MULTILINE)
            if m:
                text += f"; parallel environment smp: {m.group(1)} slots"
        return text

    @classmethod
    def translate_workflow(cls, given: Mapping[str, Any], fields: dict[str, Any],
                           base: Resources) -> tuple[dict[str, Any], tuple[str, ...]]:
        fields = dict(fields)
        extra = list(base.extra)
        if "sge_queue" in given:
            fields["partition"] = str(given["sge_queue"])
        if given.get("nodes", 1) > 1 or "tasks_per_node" in given or (given.get("tasks", 1) > 1 and "sge_pe" not in given):
            what = "tasks_per_node" if "tasks_per_node" in given else \
                (f"nodes={given['nodes']}" if given.get("nodes", 1) > 1 else f"tasks={given['tasks']}")
            raise UnsupportedResourceError(
                f"resource {what}: on SGE the parallel environment places a job's processes; give "
                "sge_pe=<an MPI parallel environment> and tasks=N (slots: tasks x cpus per task)")
        if "sge_pe" in given:
            # the adapter would ask for "-pe smp N": ask for the named PE instead; h_vmem is per slot,
            # so the memory becomes per slot here (resource_flags then divides by one slot)
            slots = (fields.pop("cpus", None) or base.cpus or 1) * given.get("tasks", 1)
            extra += ["-pe", str(given["sge_pe"]), str(slots)]
            if "memory" in fields:
                fields["memory"] = max(1, math.ceil(fields["memory"] / slots))
            fields["cpus"] = None
        if "sge_project" in given:
            extra += ["-P", str(given["sge_project"])]
        if "sge_extra" in given:
            extra += cls.raw_flags("sge_extra", given["sge_extra"])
        if "gpus" in fields and not fields["gpus"]:
            del fields["gpus"]
        return fields, tuple(extra)

    @classmethod
    def limits_report(cls, timeout: float = 15.0) -> SgeReport:
        """max_aj_tasks, max_aj_instances, max_u_jobs, max_jobs, queues, and resource quota sets."""
        cli = doctor_cli(timeout)
        report = SgeReport(cls.name, True)
        config = scheduler_config(cls, report, ["qconf", "-sconf"], " ", cli)
        if config is None:
            return report
        for key in ("max_aj_tasks", "max_aj_instances", "max_u_jobs", "max_jobs"):
            if key in config:
                report.limits[key] = config[key] + (" (unlimited)" if config[key] == "0" else "")
        try:
            for name in cli.run(["qconf", "-sql"]).stdout.split()[:20]:
                q = key_values(cli.run(["qconf", "-sq", name]).stdout, " ")
                report.partitions.append({k: q.get(k, "?") for k in ("qname", "slots", "h_rt", "h_vmem", "pe_list")})
        except SchedulerCommandError as e:
            report.partitions.append({"error": first_line(e)})
        try:
            proc = cli.run(["qconf", "-srqsl"], ok_codes=(0, 1))
            names = proc.stdout.split() if proc.returncode == 0 else []
            for name in names[:20]:
                text = cli.run(["qconf", "-srqs", name]).stdout
                rules = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("limit")]
                report.user_limits.append({"kind": "resource quota set", "name": name, "rules": "; ".join(rules)})
            if not names:
                report.user_limits_note = (proc.stderr or proc.stdout).strip() or "no resource quota set"
        except SchedulerCommandError as e:
            report.user_limits_note = f"not readable: {first_line(e)}"
        return report
