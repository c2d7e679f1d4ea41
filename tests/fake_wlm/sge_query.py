"""Fake `qstat`, `qdel`, `qhold`, `qrls` (SGE 8.1.9 subset), plus SGE id selection helpers."""
from __future__ import annotations

import re
from typing import Any

from . import formats, model
from .cli import Invocation
from .model import Ctx, Record
from .store import now, read_state, transaction

XSD = "http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd"
HEADER = ("job-ID  prior   name       user         state submit/start at     queue                "
          "          slots ja-task-ID ")
TASK_SPEC = re.compile(r"^(\d+)(?:\.(\d+(?:-\d+(?::\d+)?)?))?$")
NO_JOB = 'denied: job "{}" does not exist'


def escape(text: str) -> str:
    """XML-escape element text (avoids importing xml.sax, which pulls in urllib)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sge_state(rec: Record, ctx: Ctx) -> str:
    """qstat state letters of one element."""
    state = rec["state"]
    if state == "RUNNING" and ctx.now - rec["start_t"] < ctx.cfg["transfer_delay"]:
        return "Rt" if rec["requeued"] else "t"
    held = "h" if rec["hold"] or rec["reason"] == "Dependency" else ""
    if state == "ERROR":
        return "Eqw"
    if state == "PENDING":
        return held + ("Rq" if rec["requeued"] else "qw")
    if state == "SUSPENDED":
        return "Rs" if rec["requeued"] else "s"
    if state == "COMPLETING" and rec["kill"] and rec["kill"]["action"] == "cancel":
        return "dr"
    return held + ("Rr" if rec["requeued"] else "r")


def _rows(ctx: Ctx, users: set[str] | None, per_task: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(running rows, pending rows) as qstat groups them."""
    running, pending = [], []
    grouped: dict[tuple[int, str], dict[str, Any]] = {}
    for rec in sorted(ctx.tasks.values(), key=lambda r: (r["job_id"], r["task_id"] or 0)):
        if rec["state"] not in model.ACTIVE:
            continue
        job = ctx.job(rec)
        if users is not None and job["user"] not in users:
            continue
        code = sge_state(rec, ctx)
        prio = "0.25000" if rec["state"] != "PENDING" or rec["restarts"] else "0.00000"
        row = {"job": job, "rec": rec, "state": code, "prio": prio, "ids": [rec["task_id"]]}
        if rec["state"] in model.RUNNING_LIKE:
            row.update(time=rec["start_t"], queue=f"{ctx.cfg['queue']}@{ctx.cfg['node']}")
            running.append(row)
        elif per_task or not job["array"]:
            row.update(time=rec["submit_t"], queue="")
            pending.append(row)
        elif (rec["job_id"], code) in grouped:
            grouped[(rec["job_id"], code)]["ids"].append(rec["task_id"])
        else:
            row.update(time=rec["submit_t"], queue="")
            grouped[(rec["job_id"], code)] = row
            pending.append(row)
    for row in running + pending:
        job = row["job"]
        row["tasks"] = formats.sge_id_ranges(row["ids"], job["array_step"]) if job["array"] else ""
    return running, pending


def qstat(inv: Invocation, argv: list[str]) -> int:
    """Job list (table or `-xml`, `-g d` for one entry per task) or `-j` details."""
    xml, per_task, users, details, only = False, False, {inv.user}, None, None
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "-xml":
            xml = True
        elif arg in ("-g", "-u", "-U", "-j", "-s", "-q", "-l", "-pe", "-F") and value is None:
            if arg == "-j":
                details = ""
            else:
                inv.error(f"qstat: ERROR! {arg} option must have argument")
                return 1
        elif arg in ("-g", "-u", "-U", "-j", "-s", "-q", "-l", "-pe", "-F"):
            i += 1
            if arg == "-g":
                per_task = per_task or "d" in value
            elif arg == "-u":
                users = None if value == "*" else set(value.split(","))
            elif arg == "-j":
                details = value
            elif arg == "-s":
                only = value
        elif arg not in ("-f", "-r", "-ext", "-t", "-urg", "-pri", "-ne"):
            inv.error(f'qstat: ERROR! invalid option argument "{arg}"')
            return 1
        i += 1
    state = read_state(inv.paths)
    ctx = Ctx(inv.paths, state, now())
    if details is not None:
        return _details(inv, ctx, details)
    running, pending = _rows(ctx, users, per_task)
    if only is not None:
        keep = {"r": {"r", "Rr", "dr", "hr", "t", "Rt"}, "s": {"s", "Rs"}, "p": {"qw", "hqw", "Rq", "hRq", "Eqw"},
                "h": {"hqw", "hRq", "hr"}}
        allowed = set().union(*(keep.get(letter, set()) for letter in only))
        running = [r for r in running if r["state"] in allowed]
        pending = [r for r in pending if r["state"] in allowed]
    if xml:
        inv.print(_xml(running, pending))
    elif running or pending:
        inv.print(HEADER)
        inv.print("-" * 113)
        for row in running + pending:
            job = row["job"]
            inv.print(f"{job['job_id']:7d} {row['prio']:<7.7} {job['name']:<10.10} {job['user']:<12.12} "
                      f"{row['state']:<5.5} {formats.sge_table_time(row['time'])} {row['queue']:<30.30} "
                      f"{job['cpus']:5d} {row['tasks'] if job['array'] else '       '}")
    return 0


def _xml(running: list[dict[str, Any]], pending: list[dict[str, Any]]) -> str:
    def entry(row: dict[str, Any], kind: str) -> list[str]:
        job = row["job"]
        stamp = formats.iso_time(row["time"])
        lines = [f'    <job_list state="{kind}">',
                 f"      <JB_job_number>{job['job_id']}</JB_job_number>",
                 f"      <JAT_prio>{row['prio']}</JAT_prio>",
                 f"      <JB_name>{escape(job['name'])}</JB_name>",
                 f"      <JB_owner>{escape(job['user'])}</JB_owner>",
                 f"      <state>{row['state']}</state>",
                 f"      <JAT_start_time>{stamp}</JAT_start_time>" if kind == "running"
                 else f"      <JB_submission_time>{stamp}</JB_submission_time>",
                 f"      <queue_name>{row['queue']}</queue_name>",
                 f"      <slots>{job['cpus']}</slots>"]
        if job["array"]:
            lines.append(f"      <tasks>{row['tasks']}</tasks>")
        lines.append("    </job_list>")
        return lines
    out = ["<?xml version='1.0'?>", f'<job_info  xmlns:xsd="{XSD}">', "  <queue_info>"]
    for row in running:
        out += entry(row, "running")
    out += ["  </queue_info>", "  <job_info>"]
    for row in pending:
        out += entry(row, "pending")
    out += ["  </job_info>", "</job_info>"]
    return "\n".join(out)


def _details(inv: Invocation, ctx: Ctx, spec: str) -> int:
    wanted = [s for s in spec.split(",") if s]
    jobs = {str(rec["job_id"]): ctx.job(rec) for rec in ctx.tasks.values() if rec["state"] in model.ACTIVE}
    missing = [w for w in wanted if w not in jobs and not any(j["name"] == w for j in jobs.values())]
    if missing:
        inv.error(f"Following jobs do not exist: \n{', '.join(missing)}")
        return 1
    selected = [j for key, j in jobs.items() if not wanted or key in wanted or j["name"] in wanted]
    for job in selected:
        sge = job["sge"]
        recs = [r for r in ctx.tasks.values() if r["job_id"] == job["job_id"]]
        inv.print("=" * 62)
        pairs = [("job_number", job["job_id"]), ("exec_file", f"job_scripts/{job['job_id']}"),
                 ("submission_time", formats.ctime(recs[0]["submit_t"])), ("owner", job["user"]),
                 ("uid", job["uid"]), ("group", job["group"]), ("gid", job["gid"]),
                 ("sge_o_home", job["home"]), ("sge_o_workdir", job["submit_dir"]),
                 ("sge_o_host", ctx.cfg["node"]), ("account", job.get("account") or "sge"),
                 ("cwd", job["workdir"]),
                 ("hard resource_list", ",".join(f"{k}={v}" for k, v in sge["resources"].items()) or None),
                 ("stdout_path_list", f"NONE:NONE:{sge['stdout']}" if sge.get("stdout") else None),
                 ("stderr_path_list", f"NONE:NONE:{sge['stderr']}" if sge.get("stderr") else None),
                 ("merge", "y" if sge["merge"] else None), ("job_name", job["name"]),
                 ("shell_list", f"NONE:{sge['shell']}" if sge.get("shell") else None),
                 ("script_file", job["command"]),
                 ("job-array tasks", f"{job['array_min']}-{job['array_max']}:{job['array_step']}"
                  if job["array"] else None)]
        for key, value in pairs:
            if value is not None:
                inv.print(f"{key + ':':<28}{value}")
        for rec in recs:
            if rec["state"] == "ERROR" and rec["error"]:
                task = rec["task_id"] if rec["task_id"] is not None else 1
                stamp = formats.sge_table_time(rec["error"]["t"])
                inv.print(f"error reason {task:>10}:      {stamp} [{job['uid']}:{rec.get('pid') or 0}]: "
                          f"{rec['error']['message']}")
        inv.print("scheduling info:            (Collecting of scheduler job information is turned off)")
    return 0


def _targets(ctx: Ctx, spec: str) -> list[Record] | None:
    """Active elements for `12`, `12.3`, `12.1-5:2` or a job name; None if none exist."""
    match = TASK_SPEC.match(spec)
    active = [r for r in ctx.tasks.values() if r["state"] in model.ACTIVE]
    if match is None:
        hits = [r for r in active if ctx.job(r)["name"] == spec]
        return hits or None
    recs = [r for r in active if r["job_id"] == int(match.group(1))]
    if match.group(2):
        first, last, step = formats.parse_sge_range(match.group(2))
        recs = [r for r in recs if r["task_id"] in range(first, last + 1, step)]
    return recs or None


def _specs(argv: list[str]) -> list[str]:
    return [s for arg in argv for s in arg.split(",") if s]


def qdel(inv: Invocation, argv: list[str]) -> int:
    """Delete jobs/tasks: pending ones at once, running ones via the daemon (`dr`)."""
    force = "-f" in argv
    args = [a for a in argv if a != "-f"]
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        if args[:1] == ["-u"]:
            specs = sorted({str(r["job_id"]) for r in ctx.tasks.values() if r["state"] in model.ACTIVE
                            and ctx.job(r)["user"] in args[1].split(",")}) if len(args) > 1 else []
        else:
            specs = _specs(args)
        for spec in specs:
            recs = _targets(ctx, spec)
            if recs is None:
                inv.error(NO_JOB.format(spec.split(".")[0]))
                rc = 1
                continue
            whole = "." not in spec
            for job_id in sorted({r["job_id"] for r in recs}):
                rc |= _delete(inv, ctx, [r for r in recs if r["job_id"] == job_id], whole, force)
    return rc


def _delete(inv: Invocation, ctx: Ctx, recs: list[Record], whole: bool, force: bool) -> int:
    job = ctx.job(recs[0])
    deleted: list[int] = []
    for rec in recs:
        if rec["kill"]:
            inv.print(f"job {rec['key']} is already in deletion")
        elif rec["state"] in model.RUNNING_LIKE and rec["pid"]:
            model.begin_termination(ctx, rec, "cancel")
            if force and rec["kill"]:
                rec["kill"]["sig"] = 9
            inv.print(f"{inv.user} has registered the job-array task {job['job_id']}.{rec['task_id']} for deletion"
                      if job["array"] else f"{inv.user} has registered the job {job['job_id']} for deletion")
        else:
            model.begin_termination(ctx, rec, "cancel")
            deleted.append(rec["task_id"])
    if deleted and (whole or not job["array"]):
        inv.print(f"{inv.user} has deleted job {job['job_id']}")
    elif len(deleted) == 1:
        inv.print(f"{inv.user} has deleted job-array task {job['job_id']}.{deleted[0]}")
    elif deleted:
        ranges = formats.sge_id_ranges(deleted, job["array_step"])
        inv.print(f"{inv.user} has deleted job-array tasks {ranges} of job {job['job_id']}")
    return 0


def _hold_or_release(inv: Invocation, argv: list[str], release: bool) -> int:
    args = list(argv)
    if args[:1] == ["-h"]:
        args = args[2:]
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        for spec in _specs(args):
            recs = _targets(ctx, spec)
            if recs is None:
                inv.error(NO_JOB.format(spec.split(".")[0]))
                rc = 1
                continue
            for rec in recs:
                changed = model.release(ctx, rec) if release else (
                    rec["hold"] is None and model.hold(ctx, rec, "user"))
                if changed:
                    inv.print(_modified("hold", ctx, rec))
    return rc


def _modified(what: str, ctx: Ctx, rec: Record) -> str:
    job = ctx.job(rec)
    if job["array"]:
        return f"modified {what} of job-array task {job['job_id']}.{rec['task_id']}"
    return f"modified {what} of job {job['job_id']}"


def qhold(inv: Invocation, argv: list[str]) -> int:
    """User hold: pending tasks `hqw`, running tasks `hr`."""
    return _hold_or_release(inv, argv, release=False)


def qrls(inv: Invocation, argv: list[str]) -> int:
    """Release holds."""
    return _hold_or_release(inv, argv, release=True)
