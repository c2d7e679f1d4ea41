"""IBM Spectrum LSF: ``bsub -J "name[1-N]%K"`` arrays, one ``bjobs -a -json -o ...`` per poll (running and
recently finished jobs), ``bkill``, ``bmod`` for the array limit. The argv rendering and the parsing of
LSF's output are pure functions of this module.

Formats: the IBM Spectrum LSF 10.1 command reference (bsub, bjobs ``-o``/``-json``, bmod ``-J %K``,
bparams) and its "Termination reasons displayed by bacct, bhist, and bjobs" table. Not yet run on a real
LSF cluster: see docs/lsf.md.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Callable, Sequence

from poolparty.errors import ConfigurationError, SchedulerCommandError, SubmissionError, UnsupportedResourceError
from poolparty.queues.arrays import compress_indices
from poolparty.queues.accounting import JobUsage, clock_seconds, size_bytes
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.limits import SchedulerReport, doctor_cli, first_line, key_values, scheduler_answer
from poolparty.queues.states import JobState, JobStatus
from poolparty.resources import Resources
from poolparty.store.layout import JOB_NAME_PREFIX, job_log_name

#: bjobs STAT words (LSF "Job states"); EXIT is refined by the termination reason
TRANSLATE_TABLE = {
    "PEND": JobState.PENDING, "WAIT": JobState.PENDING, "PROV": JobState.PENDING, "PSUSP": JobState.HELD,
    "RUN": JobState.RUNNING, "UNKWN": JobState.RUNNING,  # mbatchd lost its host: it may still run
    "USUSP": JobState.SUSPENDED, "SSUSP": JobState.SUSPENDED,
    "DONE": JobState.COMPLETED, "POST_DONE": JobState.COMPLETED, "POST_ERR": JobState.COMPLETED,
    "EXIT": JobState.FAILED, "ZOMBI": JobState.NODE_FAIL,  # killed or requeued while its host was unreachable
}
#: the TERM_* keyword that starts bjobs' EXIT_REASON (LSF "Termination reasons" table)
TERMINATION_TABLE = {
    "TERM_RUNLIMIT": JobState.TIMEOUT, "TERM_DEADLINE": JobState.TIMEOUT, "TERM_CPULIMIT": JobState.TIMEOUT,
    "TERM_MEMLIMIT": JobState.OUT_OF_MEMORY, "TERM_SWAP": JobState.OUT_OF_MEMORY,
    "TERM_OWNER": JobState.CANCELLED, "TERM_FORCE_OWNER": JobState.CANCELLED, "TERM_ADMIN": JobState.CANCELLED,
    "TERM_FORCE_ADMIN": JobState.CANCELLED, "TERM_BUCKET_KILL": JobState.CANCELLED,
    "TERM_REQUEUE_ADMIN": JobState.REQUEUED, "TERM_REQUEUE_OWNER": JobState.REQUEUED,
    "TERM_PREEMPT": JobState.PREEMPTED, "TERM_RC_RECLAIM": JobState.PREEMPTED, "TERM_MC_RECALL": JobState.PREEMPTED,
    "TERM_ZOMBIE": JobState.NODE_FAIL, "TERM_REMOVE_HUNG_JOB": JobState.NODE_FAIL, "TERM_UNKNOWN": JobState.NODE_FAIL,
    "TERM_LOAD": JobState.NODE_FAIL, "TERM_CSM_ALLOC": JobState.NODE_FAIL,
    "TERM_CWD_NOTEXIST": JobState.LAUNCH_FAILED, "TERM_DATA": JobState.LAUNCH_FAILED,
}
INDEX_ENV = "LSB_JOBINDEX"
BJOBS_FIELDS = "jobid jobindex stat exit_code exit_reason job_name"
DEFAULT_MAX_ARRAY_SIZE = 1000  # lsb.params MAX_JOB_ARRAY_SIZE


def translate_state(stat: str, exit_reason: str = "") -> JobState:
    """A bjobs STAT word and its EXIT_REASON (``TERM_MEMLIMIT: job killed after ...``) -> JobState; an
    EXIT without a TERM_* reason is the script's own non-zero exit."""
    state = TRANSLATE_TABLE.get(stat, JobState.PENDING)
    if state is JobState.FAILED:
        return TERMINATION_TABLE.get(exit_reason.split(":")[0].strip(), JobState.FAILED)
    return state


def resource_flags(r: Resources) -> list[str]:
    if r.qos:
        raise UnsupportedResourceError(f"qos={r.qos!r}: LSF has no QOS; use partition= (an LSF queue) or extra=[...]")
    flags: list[str] = []
    if r.cpus is not None:
        flags += ["-n", str(r.cpus)]
    select = "span[hosts=1]"
    if r.memory is not None:  # units given explicitly: LSF_UNIT_FOR_LIMITS differs between sites
        mb = max(1, math.ceil(r.memory / 1024**2))
        select = f"rusage[mem={mb}MB] {select}"
        flags += ["-M", f"{mb}MB"]
    flags += ["-R", select]
    if r.walltime is not None:
        flags += ["-W", str(max(1, math.ceil(r.walltime / 60)))]  # [hour:]minute; minutes may exceed 59
    if r.gpus:
        flags += ["-gpu", f"num={r.gpus}"]
    if r.partition:
        flags += ["-q", r.partition]
    if r.account:
        flags += ["-P", r.account]
    return flags


def command_words(argv: Sequence[str]) -> list[str]:
    """LSF writes the command into its job file and runs it with /bin/sh: each word is quoted so the
    shell on the node gives the script exactly these arguments."""
    return [shlex.quote(str(a)) for a in argv]


def bsub_argv(request: ArrayRequest, chunk: int | None = None) -> list[str]:
    """The ``bsub`` command of the request's array, or (``chunk`` given) of one plain job running it."""
    base = ["bsub", "-cwd", str(request.workdir), "-o", str(request.log_dir / job_log_name("%J_%I")),
            *resource_flags(request.resources)]
    if request.warning_lead:  # the warning action and its lead in minutes, before the run limit
        base += ["-wa", "USR2", "-wt", str(max(1, math.ceil(request.warning_lead / 60)))]
    if chunk is not None:
        return [*base, "-J", request.name, *request.resources.extra,
                *command_words([request.script, *request.worker_argv, "--chunk", str(chunk)])]
    part = request.part
    spec = f"{request.name}[{compress_indices(part.indices)}]"
    if request.throttle < len(part.indices):
        spec += f"%{request.throttle}"
    return [*base, "-J", spec, *request.resources.extra,
            *command_words([request.script, *request.worker_argv, "--offset", str(part.offset),
                            "--index-env", INDEX_ENV])]


def parse_bsub(out: str, argv: Sequence[str]) -> str:
    """``Job <1234> is submitted to default queue <normal>.``"""
    m = re.search(r"Job <(\d+)> is submitted", out)
    if not m:
        raise SubmissionError(list(argv), 0, f"unexpected bsub output {out.strip()!r}", 1)
    return m.group(1)


def base_name(job_name: str) -> str:
    """``pool[3]`` (an element's JOB_NAME) and ``pool[1-8]%2`` -> ``pool``."""
    return re.sub(r"\[[^\]]*\](%\d+)?$", "", job_name)


def parse_bjobs(text: str, name: str) -> dict[str, JobStatus]:
    """``bjobs -json -o "jobid jobindex stat exit_code exit_reason job_name"`` -> {element id: status}
    of the jobs named ``name``. An element is ``1234`` (plain, JOBINDEX 0) or ``1234[4]``."""
    return bjobs_by_name(text, lambda n: n == name).get(name, {})


def parse_user_bjobs(text: str) -> dict[str, dict[str, JobStatus]]:
    """The same output (bjobs lists the caller's jobs by default) -> {pool name: {element id: status}}
    of poolparty's jobs (names starting ``pp-``)."""
    return bjobs_by_name(text, lambda n: n.startswith(JOB_NAME_PREFIX))


def bjobs_by_name(text: str, keep: Callable[[str], bool]) -> dict[str, dict[str, JobStatus]]:
    start = text.find("{")
    records = json.loads(text[start:]).get("RECORDS", []) if start >= 0 else []
    pools: dict[str, dict[str, JobStatus]] = {}
    for r in records:
        name = base_name(r.get("JOB_NAME", ""))
        if not keep(name) or "JOBID" not in r:
            continue
        index = str(r.get("JOBINDEX") or "0")
        element = r["JOBID"] if index == "0" else f"{r['JOBID']}[{index}]"
        stat, reason = r.get("STAT", ""), r.get("EXIT_REASON", "")
        pools.setdefault(name, {})[element] = JobStatus(translate_state(stat, reason), f"{stat} {reason}".strip())
    return pools


#: bjobs -o fields of the efficiency report (bjobs -o in the LSF 10.1 reference); -hms writes the times
#: as hh:mm:ss and the run limit without its host name
USAGE_FIELDS = "jobid jobindex stat exit_reason job_name run_time cpu_used max_mem memlimit runtimelimit nalloc_slot"


def _lsf_size(text: str) -> int | None:
    """``10 Mbytes``, ``512 Kbytes``, ``2 G`` (bjobs' memory fields) -> bytes."""
    return size_bytes(re.sub(r"\s*([KMGTP])bytes$", r"\1", text.strip(), flags=re.IGNORECASE))


def _lsf_seconds(text: str) -> float | None:
    """``00:01:05`` (-hms), ``65 second(s)``, ``1.0/hostA`` (a run limit in minutes) -> seconds."""
    text = text.strip()
    if "/" in text:
        minutes = text.split("/")[0]
        return float(minutes) * 60 if re.fullmatch(r"[\d.]+", minutes) else None
    return clock_seconds(re.sub(r"\s*second\(s\)$", "", text))


def parse_bjobs_usage(text: str, name: str) -> dict[str, JobUsage]:
    """``bjobs -a -json -hms -o USAGE_FIELDS -J name*`` -> {element id: usage} of the pool's jobs."""
    start = text.find("{")
    out: dict[str, JobUsage] = {}
    for r in json.loads(text[start:]).get("RECORDS", []) if start >= 0 else []:
        if base_name(r.get("JOB_NAME", "")) != name or "JOBID" not in r:
            continue
        index = str(r.get("JOBINDEX") or "0")
        element = r["JOBID"] if index == "0" else f"{r['JOBID']}[{index}]"
        slots = str(r.get("NALLOC_SLOT", ""))
        out[element] = JobUsage(
            element, translate_state(r.get("STAT", ""), r.get("EXIT_REASON", "")).value,
            _lsf_seconds(r.get("RUN_TIME", "")) or 0.0, _lsf_seconds(r.get("CPU_USED", "")) or 0.0,
            int(slots) if slots.isdigit() else None, _lsf_size(r.get("MAX_MEM", "")),
            _lsf_size(r.get("MEMLIMIT", "")), _lsf_seconds(r.get("RUNTIMELIMIT", "")))
    return out


def parse_max_array_size(params: str) -> int:
    """``bparams -a`` -> MAX_JOB_ARRAY_SIZE (LSF's default 1000)."""
    value = key_values(params, "=").get("MAX_JOB_ARRAY_SIZE", "")
    return int(value) if value.isdigit() else DEFAULT_MAX_ARRAY_SIZE


class LsfQueue(QueueAdapter):
    name = "lsf"
    index_env = INDEX_ENV
    first_index = 1
    result_grace = 15.0
    vanish_grace = 60.0  # bjobs -a keeps finished jobs CLEAN_PERIOD (1 h by default)
    min_poll_interval = 2.0
    shares_status = True
    scope_env = ("LSF_ENVDIR", "LSF_SERVERDIR")
    commands = ("bsub", "bjobs", "bkill")
    reserved_flags = ("-J", "-o", "-e", "-oo", "-eo", "-cwd", "-K", "-I", "-Ip", "-Is")
    workflow_names = ("lsf_queue", "lsf_project", "lsf_extra")
    workflow_renames = {"lsf_queue": "partition", "lsf_project": "account"}
    workflow_extra = "lsf_extra"

    def __init__(self, cli: SchedulerCLI):
        self.require_commands(cli)
        self.cli = cli
        self._max_index: int | None = None

    def manual_cancel(self, name: str) -> str:
        return f"bkill -J {name} 0"

    def max_array_index(self) -> int | None:
        if self._max_index is None:
            proc = self.cli.run(["bparams", "-a"], ok_codes=(0, 255)) if self._has("bparams") else None
            self._max_index = parse_max_array_size(proc.stdout if proc else "")
        return self._max_index

    def _has(self, program: str) -> bool:
        try:
            self.cli.require(program, self.name)
            return True
        except ConfigurationError:
            return False

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        part = request.part
        if not array:
            out = []
            for chunk in part.chunks:
                job = self._bsub(bsub_argv(request, chunk))
                out.append(Submitted(job, {chunk: job}))
            return out
        job = self._bsub(bsub_argv(request))
        return [Submitted(job, {part.offset + i: f"{job}[{i}]" for i in part.indices})]

    def _bsub(self, argv: list[str]) -> str:
        return parse_bsub(self.cli.run(argv, submission=True).stdout, argv)

    accounting_command = "bjobs"

    @classmethod
    def accounting_argv(cls, name: str, job_ids: Sequence[str]) -> list[str]:
        return ["bjobs", "-a", "-json", "-hms", "-o", USAGE_FIELDS, "-J", f"{name}*"]

    @classmethod
    def parse_accounting(cls, text: str, name: str) -> dict[str, JobUsage]:
        return parse_bjobs_usage(text, name)

    @classmethod
    def accounting_refusal(cls, text: str) -> str | None:
        return None  # rc 255 is bjobs' "no job found" (as in query)

    def query(self, name: str) -> dict[str, JobStatus]:
        # -a: finished jobs too (CLEAN_PERIOD); the wildcard catches the elements' "name[i]"; bjobs exits
        # 255 when it finds none
        proc = self.cli.run(["bjobs", "-a", "-json", "-o", BJOBS_FIELDS, "-J", f"{name}*"], ok_codes=(0, 255))
        return parse_bjobs(proc.stdout, name)

    def query_user(self) -> dict[str, dict[str, JobStatus]]:
        proc = self.cli.run(["bjobs", "-a", "-json", "-o", BJOBS_FIELDS, "-J", f"{JOB_NAME_PREFIX}*"], ok_codes=(0, 255))
        return parse_user_bjobs(proc.stdout)

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        targets = set(job_ids)
        if name is not None:  # the pool's unfinished jobs (no -a): bkill -J would match by prefix only
            proc = self.cli.run(["bjobs", "-json", "-o", BJOBS_FIELDS, "-J", f"{name}*"], ok_codes=(0, 255))
            targets |= {e.split("[")[0] for e, s in parse_bjobs(proc.stdout, name).items() if s.state.active}
        if targets:  # bkill exits 255 when a job already finished: that is fine here
            self.cli.run(["bkill", *sorted(targets)], ok_codes=(0, 255), changes_queue=True)

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        if not self._has("bmod"):
            return False
        self.cli.run(["bmod", "-J", f"%{throttle}", job_id], ok_codes=(0, 255), changes_queue=True)
        return True

    def log_path(self, log_dir: Path, element: str) -> Path:
        """``-o j%J_%I.log``: LSF writes ``1234_4`` for element ``1234[4]`` and ``1234_0`` for a plain job."""
        job, _, index = element.partition("[")
        return log_dir / job_log_name(f"{job}_{index.rstrip(']') or 0}")

    @classmethod
    def limits_report(cls, timeout: float = 15.0) -> SchedulerReport:
        """The version (``lsid``) and MAX_JOB_ARRAY_SIZE (``bparams -a``)."""
        cli = doctor_cli(timeout)
        report = SchedulerReport(cls.name, True)
        params = scheduler_answer(cls, report, ["bparams", "-a"], cli)
        if params is None:
            return report
        report.limits["MAX_JOB_ARRAY_SIZE"] = str(parse_max_array_size(params))
        values = key_values(params, "=")
        report.limits.update({key: values[key] for key in ("CLEAN_PERIOD", "MAX_JOBS") if key in values})
        try:
            version = cli.run(["lsid"]).stdout.strip().splitlines()
            report.limits["version"] = version[0] if version else "?"
        except (ConfigurationError, SchedulerCommandError) as e:
            report.limits["version"] = f"not readable: {first_line(e)}"
        return report
