"""Fake `bsub`, `bjobs`, `bkill`, `bmod`, `bparams` of IBM Spectrum LSF 10.1 (the subset poolparty uses).

Formats follow the LSF 10.1 command reference (bsub -J "name[list]%K", -o %J/%I, -n, -R, -M, -W [h:]m;
bjobs -a -json -o "..." -J; bkill; bmod -J "%K"; bparams -a) and real outputs quoted in public
repositories (see tests/test_queue_lsf.py for each sample's source). A job is `12`, an array element
`12[3]`; the element's JOB_NAME is `name[3]`.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from typing import Any

from . import formats, model
from .cli import Invocation, split_options
from .model import Ctx, Record
from .store import now, read_state, transaction

ONE_ARG = {"-J", "-o", "-e", "-oo", "-eo", "-cwd", "-n", "-R", "-M", "-W", "-wa", "-wt", "-q", "-P", "-G", "-gpu", "-app", "-m",
           "-sla", "-u", "-w", "-E", "-Ep", "-b", "-t", "-g", "-L", "-env", "-i"}
FLAGS = {"-H", "-r", "-rn", "-x", "-N", "-B"}
#: bjobs' EXIT_REASON for each way the fake ends a job ("KEYWORD: description", LSF's termination reasons)
EXIT_REASON = {
    "TIMEOUT": "TERM_RUNLIMIT: job killed after reaching LSF run time limit",
    "OUT_OF_MEMORY": "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit",
    "CANCELLED": "TERM_OWNER: job killed by owner",
    "NODE_FAIL": "TERM_REMOVE_HUNG_JOB: job removed from LSF system after host failure",
    "PREEMPTED": "TERM_PREEMPT: job killed after preemption",
    "BOOT_FAIL": "TERM_CWD_NOTEXIST: current working directory is not accessible",
}
STAT = {"RUNNING": "RUN", "COMPLETING": "RUN", "SUSPENDED": "USUSP", "COMPLETED": "DONE"}


def _mem_mb(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMGT]?B?)", text.strip().upper())
    if not m:
        raise ValueError(text)
    unit = m.group(2).rstrip("B") or "K"  # LSF_UNIT_FOR_LIMITS defaults to KB
    return max(1, int(int(m.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit]))


def bsub(inv: Invocation, argv: list[str]) -> int:
    """`bsub [opts] command [args]`: LSF joins the words into one command line for /bin/sh."""
    parsed = split_options(argv, FLAGS, ONE_ARG)
    if isinstance(parsed, str):
        inv.error(f"{parsed}: Illegal option\nUsage: bsub [-h] [-V] ...")
        return 255
    opts, command = dict(parsed[0]), parsed[1]
    if not command:
        inv.error("bsub: No command specified. Job not submitted.")
        return 255
    cfg = read_state(inv.paths)["config"]
    spec = opts.get("-J", command[0])
    m = re.fullmatch(r"(.*?)(?:\[([\d,\-:]+)\])?(?:%(\d+))?", spec)
    name, indices, throttle = m.group(1), m.group(2), m.group(3)
    task_ids = None
    if indices:
        try:
            task_ids, _ = formats.parse_slurm_array(indices)
        except ValueError:
            inv.error("Bad job array index list. Job not submitted.")
            return 255
        if min(task_ids) < 1 or max(task_ids) > cfg["max_array_size"]:
            inv.error("Job array index too large. Job not submitted.")
            return 255
    try:
        mem = _mem_mb(opts["-M"]) if "-M" in opts else None
        walltime = opts.get("-W")
        limit = None
        if walltime:
            hours, _, minutes = walltime.rpartition(":")
            limit = float((int(hours or 0) * 60 + int(minutes)) * 60)
    except ValueError:
        inv.error(f"{opts.get('-M') or opts.get('-W')}: Bad argument. Job not submitted.")
        return 255
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        job_id = model.allocate_spooled_job(ctx)
        job: dict[str, Any] = {
            "job_id": job_id, "name": name, "user": inv.user, "uid": inv.uid, "group": inv.group,
            "gid": os.getegid(), "home": os.path.expanduser("~"), "submit_dir": os.getcwd(),
            "workdir": opts.get("-cwd") or os.getcwd(), "argv": command, "command": command[0],
            "command_line": " ".join(command), "cpus": int(opts.get("-n", "1")), "mem_mb": mem,
            "time_limit": limit, "throttle": int(throttle) if throttle else None, "requeue": False,
            "queue": opts.get("-q"), "partition": opts.get("-q") or "normal", "qos": None,
            "array": task_ids is not None, "lsf": {"stdout": opts.get("-o") or opts.get("-oo"),
                                                    "stderr": opts.get("-e") or opts.get("-eo")},
        }
        if task_ids is None:
            job.update(array_min=None, array_max=None, array_step=None, array_count=None)
        else:
            job.update(array_min=min(task_ids), array_max=max(task_ids), array_step=1, array_count=len(task_ids))
        model.add_submission(ctx, job, task_ids, "user" if "-H" in opts else None)
    queue = f"queue <{opts['-q']}>" if "-q" in opts else "default queue <normal>"
    inv.print(f"Job <{job_id}> is submitted to {queue}.")
    return 0


def stat(rec: Record) -> str:
    state = rec["state"]
    if state == "PENDING":
        return "PSUSP" if rec["hold"] else "PEND"
    return STAT.get(state, "EXIT")


def _fields(ctx: Ctx, rec: Record) -> dict[str, str]:
    job = ctx.job(rec)
    word = stat(rec)
    code, sig = rec["exit"] or [0, 0]
    exit_code = "" if word != "EXIT" else str(code or (128 + sig if sig else 130 if rec["state"] == "CANCELLED" else ""))
    stamp = (lambda t: time.strftime("%b %e %H:%M", time.localtime(t)) if t else "")
    return {
        "jobid": str(job["job_id"]), "jobindex": str(rec["task_id"] or 0), "stat": word,
        "user": job["user"], "queue": job.get("queue") or "normal",
        "job_name": f"{job['name']}[{rec['task_id']}]" if job["array"] else job["name"],
        "exit_code": exit_code, "exit_reason": EXIT_REASON.get(rec["state"], "") if word == "EXIT" else "",
        "from_host": ctx.cfg["node"], "exec_host": ctx.cfg["node"] if rec["start_t"] else "",
        "submit_time": stamp(rec["submit_t"]), "start_time": stamp(rec["start_t"]),
        "finish_time": stamp(rec["end_t"]) + (" L" if rec["end_t"] else ""),
        "pend_reason": "" if rec["state"] != "PENDING" else "New job is waiting for scheduling;",
    }


def bjobs(inv: Invocation, argv: list[str]) -> int:
    """`bjobs [-a] -json -o "fields" [-J pattern] [ids]`: the JSON document LSF 10.1 prints."""
    if "-json" not in argv or "-o" not in argv:
        inv.error("fake bjobs: only -json -o is implemented")
        return 255
    fields = argv[argv.index("-o") + 1].split()
    pattern = argv[argv.index("-J") + 1] if "-J" in argv else None
    every = "-a" in argv
    state = read_state(inv.paths)
    ctx = Ctx(inv.paths, state, now())
    records = []
    for rec in sorted(ctx.tasks.values(), key=lambda r: (r["job_id"], r["task_id"] or 0)):
        job = ctx.job(rec)
        if not every and rec["state"] not in model.ACTIVE:
            continue
        if pattern and not fnmatch.fnmatchcase(job["name"], pattern):
            continue
        values = _fields(ctx, rec)
        records.append({f.upper(): values.get(f, "") for f in fields})
    inv.print(render(records))
    return 0


def render(records: list[dict[str, str]]) -> str:
    """bjobs' own layout: two-space indents, one key per line, no space after the colon."""
    lines = ["{", '  "COMMAND":"bjobs",', f'  "JOBS":{len(records)},', '  "RECORDS":[']
    for n, r in enumerate(records):
        lines.append("    {")
        # LSF escapes every "/" as "\/" (EXEC_CWD "\/home\/otptest" in BatchEuphoria's LSFJobManagerSpec)
        items = [f'      "{k}":{json.dumps(v).replace("/", chr(92) + "/")}' for k, v in r.items()]
        lines.append(",\n".join(items))
        lines.append("    }" + ("," if n + 1 < len(records) else ""))
    lines += ["  ]", "}"]
    return "\n".join(lines)


def _targets(ctx: Ctx, spec: str) -> list[Record]:
    m = re.fullmatch(r"(\d+)(?:\[(\d+)\])?", spec)
    if not m:
        return []
    recs = [r for r in ctx.tasks.values() if r["job_id"] == int(m.group(1))]
    return [r for r in recs if r["task_id"] == int(m.group(2))] if m.group(2) else recs


def bkill(inv: Invocation, argv: list[str]) -> int:
    """`bkill id ...` (`12`, `12[3]`): `Job <12> is being terminated`; finished: rc 255."""
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        for spec in [a for a in argv if not a.startswith("-")]:
            recs = _targets(ctx, spec)
            live = [r for r in recs if r["state"] in model.ACTIVE]
            if not recs:
                inv.error(f"Job <{spec}>: No matching job found")
                rc = 255
            elif not live:
                inv.error(f"Job <{spec}>: Job has already finished")
                rc = 255
            else:
                for rec in live:
                    model.begin_termination(ctx, rec, "cancel")
                inv.print(f"Job <{spec}> is being terminated")
    return rc


def bmod(inv: Invocation, argv: list[str]) -> int:
    """`bmod -J "%K" 12`: the array's running-element limit."""
    if len(argv) != 3 or argv[0] != "-J" or not argv[1].startswith("%"):
        inv.error("fake bmod: only -J %K is implemented")
        return 255
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        recs = _targets(ctx, argv[2])
        if not recs:
            inv.error(f"Job <{argv[2]}>: No matching job found")
            return 255
        ctx.job(recs[0])["throttle"] = int(argv[1][1:])
    inv.print(f"Parameters of job <{argv[2]}> are being changed")
    return 0


def bparams(inv: Invocation, argv: list[str]) -> int:
    """`bparams -a`: every lsb.params parameter, `NAME = value` lines."""
    cfg = read_state(inv.paths)["config"]
    inv.print("System default queue for batch jobs:  normal")
    inv.print("Default host specification:  DEFAULT")
    inv.print("Job Dispatch Interval:  20 seconds")
    inv.print("")
    for key, value in (("CLEAN_PERIOD", int(cfg["min_job_age"])), ("MAX_JOB_ARRAY_SIZE", cfg["max_array_size"]),
                       ("MAX_JOBID", 999999), ("MBD_SLEEP_TIME", 10), ("JOB_ACCEPT_INTERVAL", 0)):
        inv.print(f"\t{key} = {value}")
    return 0


def lsid(inv: Invocation, argv: list[str]) -> int:
    """The version line, the copyright, the cluster and the master host."""
    cfg = read_state(inv.paths)["config"]
    inv.print(cfg.get("version") or "IBM Spectrum LSF Standard 10.1.0.13, Apr 15 2022")
    inv.print("Copyright International Business Machines Corp. 1992, 2016.")
    inv.print("US Government Users Restricted Rights - Use, duplication or disclosure restricted by GSA ADP "
              "Schedule Contract with IBM Corp.")
    inv.print("")
    inv.print(f"My cluster name is {cfg['cluster']}")
    inv.print(f"My master name is {cfg['node']}")
    return 0
