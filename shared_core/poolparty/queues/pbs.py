"""PBS Professional / OpenPBS: ``qsub -J`` arrays, one ``qstat -f -F json -x -t`` per poll (running AND
finished jobs), ``qdel``. The argv rendering and the parsing of PBS's output are pure functions of this
module.

Formats and codes: the PBS Professional Reference Guide (qsub ``-J``/``-W``, qstat ``-f -F json -x -t``,
job states) and OpenPBS's ``src/include/job.h`` (the negative ``JOB_EXEC_*`` exit statuses). Not yet run
on a real PBS server: see docs/pbs.md.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

from poolparty.errors import ConfigurationError, PoolPartyError, SubmissionError, UnsupportedResourceError
from poolparty.queues.accounting import JobUsage, clock_seconds, size_bytes
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted, current_user
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.limits import SchedulerReport, doctor_cli, first_line, scheduler_answer
from poolparty.queues.states import JobState, JobStatus
from poolparty.resources import Resources, format_hms
from poolparty.store.layout import JOB_NAME_PREFIX, job_log_name

#: qstat's one-letter job states (Reference Guide, "Job States"); F and X are read from Exit_status
TRANSLATE_TABLE = {
    "Q": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING, "M": JobState.PENDING,
    "H": JobState.HELD, "R": JobState.RUNNING, "E": JobState.RUNNING, "B": JobState.RUNNING,
    "S": JobState.SUSPENDED, "U": JobState.SUSPENDED,
}
#: PBS's own negative Exit_status values (OpenPBS src/include/job.h, JOB_EXEC_*): what ended the job
EXIT_STATUS_TABLE = {
    -29: JobState.TIMEOUT,  # JOB_EXEC_KILL_WALLTIME
    -28: JobState.TIMEOUT,  # JOB_EXEC_KILL_CPUT
    -27: JobState.OUT_OF_MEMORY,  # JOB_EXEC_KILL_MEM
    -26: JobState.OUT_OF_MEMORY,  # JOB_EXEC_KILL_VMEM
    -20: JobState.NODE_FAIL,  # JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed
    -14: JobState.NODE_FAIL,  # JOB_EXEC_RERUN_SIS_FAIL: sister node failed
    -11: JobState.NODE_FAIL,  # JOB_EXEC_RERUN: PBS meant to rerun it, and did not
    -3: JobState.NODE_FAIL,  # JOB_EXEC_RETRY: failed on its node before it ran
    -16: JobState.NODE_FAIL, -18: JobState.NODE_FAIL,  # hooks asked for a rerun
    -12: JobState.PREEMPTED,  # JOB_EXEC_CHKP: checkpointed and killed
    -17: JobState.CANCELLED, -19: JobState.CANCELLED,  # hooks deleted it
}
#: JOB_EXEC_FAIL1/2, INITABT, INITRST, INITRMG, BADRESRT, FAILUID, FAIL_PASSWORD, FAIL_SECURITY,
#: HOOKERROR, FAIL_KRB5, JOINJOB: it never ran the script
LAUNCH_FAILURES = frozenset({-1, -2, -4, -5, -6, -7, -10, -13, -21, -22, -23, -30})
#: PBS writes 256 + N when the job was ended by signal N (qdel, or an old server's walltime kill: 271)
SIGNAL_BASE = 256
INDEX_ENV = "PBS_ARRAY_INDEX"
ARRAY_INDEX = "^array_index^"  # qsub replaces it in -o/-e paths by the subjob's index
QSTAT = ["qstat", "-f", "-F", "json", "-x", "-t"]
_PBS_QSTAT: dict[tuple[str, int], bool] = {}  # (qstat path, runner) -> it is PBS's
#: PBS Professional 2020.1 and OpenPBS 20.0 brought the ``max_run_subjobs`` array limit
THROTTLE_SINCE = {"pbspro": 2020, "openpbs": 20}


def exit_state(status: Any) -> JobState:
    """A finished job's (F) or subjob's (X) Exit_status -> JobState; none at all: deleted before it ran."""
    if status is None or status == "":
        return JobState.CANCELLED
    code = int(status)
    if code == 0:
        return JobState.COMPLETED
    if code in EXIT_STATUS_TABLE:
        return EXIT_STATUS_TABLE[code]
    if code in LAUNCH_FAILURES or code < 0:
        return JobState.LAUNCH_FAILED
    if code > SIGNAL_BASE:
        return JobState.CANCELLED
    return JobState.FAILED


def translate_state(raw: str, exit_status: Any = None) -> JobState:
    """A qstat job_state letter (and, once finished, its Exit_status) -> JobState."""
    if raw in ("F", "X"):
        return exit_state(exit_status)
    return TRANSLATE_TABLE.get(raw, JobState.PENDING)


def resource_flags(r: Resources) -> list[str]:
    if r.qos:
        raise UnsupportedResourceError(f"qos={r.qos!r}: PBS has no QOS; use partition= (a PBS queue) or extra=[...]")
    chunk = f"select=1:ncpus={r.cpus or 1}"
    if r.memory is not None:
        chunk += f":mem={max(1, math.ceil(r.memory / 1024**2))}mb"
    if r.gpus:
        chunk += f":ngpus={r.gpus}"
    flags = ["-l", chunk]
    if r.walltime is not None:
        flags += ["-l", f"walltime={format_hms(r.walltime)}"]
    if r.partition:
        flags += ["-q", r.partition]
    if r.account:
        flags += ["-A", r.account]
    return flags


def qsub_argv(request: ArrayRequest, *, throttles: bool, chunk: int | None = None) -> list[str]:
    """The ``qsub`` command of the request's array, or (``chunk`` given) of one plain job running it.
    The script's arguments follow ``--`` (qsub's "executable and arguments" form)."""
    base = ["qsub", "-N", request.name, "-V", "-j", "oe", "-r", "y", *resource_flags(request.resources)]
    worker = [str(request.script), *request.worker_argv]
    walltime = request.resources.walltime
    if request.warning_lead and walltime:  # PBS has no warning signal: the worker's own timer
        worker += ["--warn-in", str(walltime - request.warning_lead)]
    if chunk is not None:
        return [*base, "-o", str(request.log_dir / log_name(chunk)), *request.resources.extra, "--",
                *worker, "--chunk", str(chunk)]
    part = request.part
    lo, hi = min(part.indices), max(part.indices)
    if hi - lo + 1 != len(part.indices):
        raise ValueError("PBS arrays must be contiguous (internal error)")
    limit = ["-W", f"max_run_subjobs={request.throttle}"] if throttles and request.throttle < len(part.indices) else []
    # PBS has no job-id placeholder for -o, only ^array_index^: the log is named by the part's chunks
    return [*base, "-J", f"{lo}-{hi}", *limit, "-o", str(request.log_dir / log_name(part.offset, ARRAY_INDEX)),
            *request.resources.extra, "--", *worker, "--offset", str(part.offset), "--index-env", INDEX_ENV]


def log_name(first: int, index: str | int | None = None) -> str:
    """The log of the plain job running chunk ``first``, or of subjob ``index`` of the array at offset
    ``first``: PBS copies it there when the job ends (a resubmission of the same chunk overwrites it)."""
    return job_log_name(f"c{first}" if index is None else f"a{first}.{index}")


def parse_qsub(out: str, argv: Sequence[str]) -> str:
    """``qsub`` prints ``1234.server`` for a job and ``1234[].server`` for an array."""
    job = out.strip()
    if not re.fullmatch(r"\d+(\[\])?(\.[\w.-]+)?", job):
        raise SubmissionError(list(argv), 0, f"unexpected qsub output {job!r}", 1)
    return job


def subjob_id(array_id: str, index: int) -> str:
    """``1234[].server`` and 4 -> ``1234[4].server``, as ``qstat -t`` names the subjob."""
    return array_id.replace("[]", f"[{index}]", 1)


def parse_qstat(text: str, name: str) -> dict[str, JobStatus]:
    """``qstat -f -F json -x -t`` -> {job or subjob id: status} of the jobs named ``name``. The array
    itself (``1234[].server``, state B) is left out: its subjobs speak for it."""
    jobs = json.loads(text or "{}").get("Jobs") or {}
    return {job_id: job_status(attrs) for job_id, attrs in jobs.items()
            if attrs.get("Job_Name") == name and "[]" not in job_id}


def job_status(attrs: dict[str, Any]) -> JobStatus:
    raw = str(attrs.get("job_state", ""))
    exit_status = attrs.get("Exit_status")
    reason = raw if exit_status is None else f"{raw} Exit_status={exit_status}"
    return JobStatus(translate_state(raw, exit_status), reason)


def parse_user_qstat(text: str, user: str) -> dict[str, dict[str, JobStatus]]:
    """``qstat -f -F json -x -t`` -> {pool name: {job or subjob id: status}} of ``user``'s poolparty jobs
    (``Job_Owner`` is ``user@submit-host``; names start ``pp-``)."""
    jobs = json.loads(text or "{}").get("Jobs") or {}
    pools: dict[str, dict[str, JobStatus]] = {}
    for job_id, attrs in jobs.items():
        name = str(attrs.get("Job_Name", ""))
        if (name.startswith(JOB_NAME_PREFIX) and "[]" not in job_id
                and str(attrs.get("Job_Owner", "")).split("@")[0] == user):
            pools.setdefault(name, {})[job_id] = job_status(attrs)
    return pools


def parse_qstat_usage(text: str, name: str) -> dict[str, JobUsage]:
    """``qstat -f -F json -x -t`` -> {job or subjob id: usage} of the pool's jobs that ran, from
    ``resources_used`` (cput, mem, walltime, ncpus) and ``Resource_List`` (mem, walltime): PBS Professional
    Reference Guide, "Job Attributes" and "Resources"; sizes like ``1234kb``, times ``HH:MM:SS``."""
    out: dict[str, JobUsage] = {}
    for job_id, attrs in (json.loads(text or "{}").get("Jobs") or {}).items():
        used = attrs.get("resources_used") or {}
        if attrs.get("Job_Name") != name or "[]" in job_id or not used:
            continue
        asked = attrs.get("Resource_List") or {}
        cpus = used.get("ncpus", asked.get("ncpus"))
        limit = asked.get("walltime")
        out[job_id] = JobUsage(
            job_id, translate_state(str(attrs.get("job_state", "")), attrs.get("Exit_status")).value,
            clock_seconds(str(used.get("walltime", "0"))) or 0.0, clock_seconds(str(used.get("cput", "0"))) or 0.0,
            int(cpus) if cpus is not None else None, size_bytes(str(used.get("mem", ""))),
            size_bytes(str(asked.get("mem", ""))), clock_seconds(str(limit)) if limit else None)
    return out


def parse_server(text: str) -> dict[str, str]:
    """``qstat -B -f -F json`` -> the server's attributes (``pbs_version``, ``max_array_size`` ...)."""
    servers = json.loads(text or "{}").get("Server") or {}
    attrs = next(iter(servers.values()), {})
    return {k: str(v) for k, v in attrs.items() if not isinstance(v, dict)}


def throttles_arrays(version: str) -> bool:
    """Whether this server version knows ``max_run_subjobs`` (PBS Pro 2020.1+, OpenPBS 20.0+)."""
    m = re.match(r"(\d+)", version)
    if not m:
        return False
    major = int(m.group(1))
    return major >= THROTTLE_SINCE["pbspro"] if major >= 1000 else major >= THROTTLE_SINCE["openpbs"]


class PbsQueue(QueueAdapter):
    name = "pbs"
    index_env = INDEX_ENV
    first_index = 0
    contiguous_arrays = True  # -J takes one range (with a step), not a list
    result_grace = 15.0
    vanish_grace = 60.0  # a server without job history drops finished jobs at once
    min_poll_interval = 2.0
    shares_status = True
    scope_env = ("PBS_SERVER", "PBS_CONF_FILE")
    commands = ("qsub", "qstat", "qdel", "qselect")
    reserved_flags = ("-N", "-J", "-o", "-e", "-j", "-V", "-r", "-W", "--")
    workflow_names = ("pbs_queue", "pbs_account", "pbs_extra")
    workflow_renames = {"pbs_queue": "partition", "pbs_account": "account"}
    workflow_extra = "pbs_extra"

    @classmethod
    def require_commands(cls, cli: SchedulerCLI) -> None:
        """Grid Engine and Torque also install a ``qstat``: only PBS Professional's and OpenPBS's answer
        ``qstat --version`` with ``pbs_version = ...`` (asked once per runner and qstat path)."""
        super().require_commands(cli)
        path = shutil.which("qstat") or "qstat"
        key = (path, id(cli))
        if key not in _PBS_QSTAT:
            try:
                _PBS_QSTAT[key] = "pbs_version" in cli.run(["qstat", "--version"]).stdout
            except PoolPartyError:
                _PBS_QSTAT[key] = False
        if not _PBS_QSTAT[key]:
            raise ConfigurationError(
                f"queue='pbs' needs the `qstat` of PBS Professional or OpenPBS, which is not on PATH: {path} does "
                "not answer `qstat --version` with a pbs_version (another scheduler's?). Run on a login node of "
                "a PBS cluster, load its module, or choose the queue of this cluster.")

    def __init__(self, cli: SchedulerCLI):
        self.require_commands(cli)
        self.cli = cli
        self._server: dict[str, str] | None = None
        self._logs: dict[str, str] = {}  # element -> its log's name, for the elements submitted here

    @property
    def throttles_arrays(self) -> bool:  # type: ignore[override]
        return throttles_arrays(self.server().get("pbs_version", ""))

    def server(self) -> dict[str, str]:
        """The server's attributes, asked once."""
        if self._server is None:
            self._server = parse_server(self.cli.run(["qstat", "-B", "-f", "-F", "json"]).stdout)
        return self._server

    def manual_cancel(self, name: str) -> str:
        return f"qdel $(qselect -N {name})"

    def max_array_index(self) -> int | None:
        size = self.server().get("max_array_size", "10000")  # the server's default
        return int(size) - 1 if size.isdigit() else 9999

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        part = request.part
        # PBS Professional refuses an array of one subjob: run that chunk as a plain job
        if not array or len(part.indices) == 1:
            out = []
            for chunk in part.chunks:
                job = self._qsub(qsub_argv(request, throttles=False, chunk=chunk))
                self._logs[job] = log_name(chunk)
                out.append(Submitted(job, {chunk: job}))
            return out
        job = self._qsub(qsub_argv(request, throttles=self.throttles_arrays))
        elements = {part.offset + i: subjob_id(job, i) for i in part.indices}
        self._logs.update({e: log_name(part.offset, e.split("[")[1].split("]")[0]) for e in elements.values()})
        return [Submitted(job, elements)]

    def _qsub(self, argv: list[str]) -> str:
        return parse_qsub(self.cli.run(argv, submission=True).stdout, argv)

    accounting_command = "qstat"

    @classmethod
    def accounting_argv(cls, name: str, job_ids: Sequence[str]) -> list[str]:
        return list(QSTAT)  # finished jobs too (-x), filtered by name as the status query is

    @classmethod
    def parse_accounting(cls, text: str, name: str) -> dict[str, JobUsage]:
        return parse_qstat_usage(text, name)

    def query(self, name: str) -> dict[str, JobStatus]:
        # no job ids on the command line: OpenPBS issue #2672 (qstat -f -F json with several ids printing
        # only the first); the filter by Job_Name is ours
        return parse_qstat(self.cli.run(QSTAT).stdout, name)

    def query_user(self) -> dict[str, dict[str, JobStatus]]:
        return parse_user_qstat(self.cli.run(QSTAT).stdout, current_user())

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        targets = list(job_ids)
        if name is not None:  # qdel takes no job name: qselect lists the pool's unfinished jobs and arrays
            listed = self.cli.run(["qselect", "-N", name], ok_codes=(0, 1, 153)).stdout.split()
            targets = sorted(set(targets) | set(listed))
        if targets:  # qdel exits non-zero when a job already finished: that is fine here
            # (PBSE_HISTJOBID 15139 and PBSE_UNKJOBID 15001 reach the shell as 35 and 153)
            self.cli.run(["qdel", *targets], ok_codes=(0, 1, 35, 153), changes_queue=True)

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        if not self.throttles_arrays or "[]" not in job_id:
            return False
        self.cli.run(["qalter", "-W", f"max_run_subjobs={throttle}", job_id], ok_codes=(0, 1), changes_queue=True)
        return True

    @classmethod
    def limits_report(cls, timeout: float = 15.0) -> SchedulerReport:
        """The server's version and array limit (``qstat -B -f -F json``), and its queues."""
        report = SchedulerReport(cls.name, True)
        text = scheduler_answer(cls, report, ["qstat", "-B", "-f", "-F", "json"], doctor_cli(timeout))
        if text is None:
            return report
        try:
            server = parse_server(text)
        except ValueError as e:
            report.reachable, report.problem = False, f"qstat -B -f -F json printed no JSON: {first_line(e)}"
            return report
        report.limits["pbs_version"] = server.get("pbs_version", "?")
        report.limits["max_array_size"] = server.get("max_array_size", "10000 (default)")
        report.limits["array throttle"] = ("max_run_subjobs" if throttles_arrays(server.get("pbs_version", ""))
                                           else "none (poolparty submits no more subjobs than may run)")
        report.limits["job_history_enable"] = server.get("job_history_enable", "False (finished jobs vanish)")
        return report

    def log_path(self, log_dir: Path, element: str) -> Path:
        return log_dir / self._logs.get(element, job_log_name(element))
