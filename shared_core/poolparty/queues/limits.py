"""What a scheduler allows, read from its own commands: array and job-count limits, partitions/queues
and the per-user limits where the user may read them. Used by ``poolparty doctor``."""
from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass, field
from typing import Any

from poolparty.errors import ConfigurationError, SchedulerCommandError
from poolparty.queues.cli import SchedulerCLI

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol")
SGE_COMMANDS = ("qsub", "qstat", "qdel", "qconf")


@dataclass
class SchedulerReport:
    kind: str
    reachable: bool
    problem: str | None = None  # why it is not usable
    limits: dict[str, str] = field(default_factory=dict)
    partitions: list[dict[str, str]] = field(default_factory=list)  # SLURM partitions, SGE queues
    user_limits: list[dict[str, str]] = field(default_factory=list)
    user_limits_note: str | None = None  # why they could not be read, or that there are none


def _cli(timeout: float) -> SchedulerCLI:
    return SchedulerCLI(timeout=timeout, attempts=2, backoff_base=0.3)


def _key_values(text: str, sep: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if sep == "=" and "=" in line:
            k, v = line.split("=", 1)
        elif sep == " " and line.strip() and not line.startswith(" "):
            k, _, v = line.partition(" ")
        else:
            continue
        out[k.strip()] = v.strip()
    return out


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def slurm_report(timeout: float = 15.0) -> SchedulerReport:
    """MaxArraySize, MaxJobCount, partitions, and association/QOS limits of the current user."""
    cli = _cli(timeout)
    try:
        for program in SLURM_COMMANDS:
            cli.require(program, "slurm")
        config = _key_values(cli.run(["scontrol", "show", "config"]).stdout, "=")
    except (ConfigurationError, SchedulerCommandError) as e:
        return SchedulerReport("slurm", False, _first_line(e))
    report = SchedulerReport("slurm", True)
    for key in ("SLURM_VERSION", "ClusterName", "MaxArraySize", "MaxJobCount", "MinJobAge"):
        if key in config:
            report.limits[key] = config[key]
    try:
        for line in cli.run(["scontrol", "show", "partition", "-o"]).stdout.splitlines():
            fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
            report.partitions.append({k: fields.get(k, "?") for k in (
                "PartitionName", "State", "MaxTime", "MaxNodes", "MaxCPUsPerNode", "MaxMemPerNode", "TotalCPUs")})
    except SchedulerCommandError as e:
        report.partitions.append({"error": _first_line(e)})
    user = getpass.getuser()
    try:
        cli.require("sacctmgr", "slurm")
        assoc = cli.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}",
                         "format=Account,Partition,MaxJobs,MaxSubmit,MaxTRES,MaxWall,GrpJobs,GrpSubmit,QOS"]).stdout
        names = ("Account", "Partition", "MaxJobs", "MaxSubmit", "MaxTRES", "MaxWall", "GrpJobs", "GrpSubmit", "QOS")
        for line in assoc.splitlines():
            if line.strip():
                report.user_limits.append({"kind": "association", **_row(names, line)})
        qos = cli.run(["sacctmgr", "-n", "-P", "show", "qos",
                       "format=Name,MaxJobsPU,MaxSubmitPU,MaxTRESPU,MaxWall"]).stdout
        for line in qos.splitlines():
            if line.strip():
                report.user_limits.append({"kind": "qos", **_row(("Name", "MaxJobsPU", "MaxSubmitPU", "MaxTRESPU",
                                                                  "MaxWall"), line)})
        if not report.user_limits:
            report.user_limits_note = f"no association for user {user} (accounting may be off)"
    except (ConfigurationError, SchedulerCommandError) as e:
        report.user_limits_note = f"not readable: {_first_line(e)}"
    return report


def _row(names: tuple[str, ...], line: str) -> dict[str, str]:
    return {n: v for n, v in zip(names, line.split("|")) if v}


def sge_report(timeout: float = 15.0) -> SchedulerReport:
    """max_aj_tasks, max_aj_instances, max_u_jobs, max_jobs, queues, and resource quota sets."""
    cli = _cli(timeout)
    try:
        for program in SGE_COMMANDS:
            cli.require(program, "sge")
        config = _key_values(cli.run(["qconf", "-sconf"]).stdout, " ")
    except (ConfigurationError, SchedulerCommandError) as e:
        return SchedulerReport("sge", False, _first_line(e))
    report = SchedulerReport("sge", True)
    for key in ("max_aj_tasks", "max_aj_instances", "max_u_jobs", "max_jobs"):
        if key in config:
            report.limits[key] = config[key] + (" (unlimited)" if config[key] == "0" else "")
    try:
        for name in cli.run(["qconf", "-sql"]).stdout.split()[:20]:
            q = _key_values(cli.run(["qconf", "-sq", name]).stdout, " ")
            report.partitions.append({k: q.get(k, "?") for k in ("qname", "slots", "h_rt", "h_vmem", "pe_list")})
    except SchedulerCommandError as e:
        report.partitions.append({"error": _first_line(e)})
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
        report.user_limits_note = f"not readable: {_first_line(e)}"
    return report


def report(kind: str, timeout: float = 15.0) -> SchedulerReport:
    return slurm_report(timeout) if kind == "slurm" else sge_report(timeout)


def as_json(r: SchedulerReport) -> dict[str, Any]:
    return asdict(r)

