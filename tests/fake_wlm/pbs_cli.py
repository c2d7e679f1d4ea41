"""Fake `qsub`, `qstat`, `qdel`, `qalter` of PBS Professional (the subset poolparty uses).

Formats follow the PBS Professional Reference Guide (qsub -J/-W/-l/-o/-j/-r/-V and `-- executable args`,
`qstat -f -F json -x -t`, `qstat -B -f -F json`, the ^array_index^ path token) and real outputs quoted in
public trackers (see tests/test_queue_pbs.py for each sample's source). Job ids are `12.server`,
arrays `12[].server`, subjobs `12[3].server`.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from typing import Any

from . import formats, model
from .cli import Invocation, split_options
from .model import Ctx, Record
from .store import now, read_state, transaction

SERVER = model.PBS_SERVER
DEFAULT_VERSION = "2022.1.1.20220926110806"
ONE_ARG = {"-N", "-J", "-o", "-e", "-j", "-r", "-l", "-q", "-A", "-W", "-P", "-m", "-M", "-a", "-c", "-h",
           "-k", "-p", "-S", "-u", "-v"}
FLAGS = {"-V", "-z", "-f", "-I", "-X"}
ID = re.compile(r"^(\d+)(\[(\d*)\])?(\.[\w.-]+)?$")


def knows_max_run_subjobs(version: str) -> bool:
    """PBS Professional 2020.1+ and OpenPBS 20.0+ know the max_run_subjobs array limit."""
    major = int(version.split(".")[0])
    return major >= 2020 if major >= 1000 else major >= 20


def _error(inv: Invocation, text: str, rc: int) -> int:
    inv.error(text)
    return rc


def _mem_mb(text: str) -> int:
    m = re.fullmatch(r"(\d+)(b|kb|mb|gb|tb|w|kw|mw|gw)?", text.strip().lower())
    if not m:
        raise ValueError(text)
    factor = {None: 1 / 1024**2, "b": 1 / 1024**2, "kb": 1 / 1024, "mb": 1, "gb": 1024, "tb": 1024**2}.get(m.group(2), 1)
    return max(1, int(int(m.group(1)) * factor))


def qsub(inv: Invocation, argv: list[str]) -> int:
    """`qsub [opts] -- executable args`: prints `12.server` or `12[].server`."""
    parsed = split_options(argv, FLAGS, ONE_ARG)
    if isinstance(parsed, str):
        return _error(inv, f"qsub: invalid option -- '{parsed.lstrip('-')}'" + "\nusage: qsub [-a date_time] ... [-J X-Y[:Z]] ... [script | -- command [arg1 ...]]", 2)
    opts, command = parsed
    if not command:
        return _error(inv, "qsub: no script file given and stdin is a terminal", 2)
    cfg = read_state(inv.paths)["config"]
    job: dict[str, Any] = {"cpus": 1, "mem_mb": None, "time_limit": None, "throttle": None, "requeue": True,
                           "pbs": {"join": "n", "stdout": None, "stderr": None, "export_all": False}}
    name, task_ids, hold = os.path.basename(command[0]), None, None
    for opt, value in opts:
        if opt == "-N":
            name = value
        elif opt == "-J":
            m = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?", value)
            if not m or int(m.group(2)) <= int(m.group(1)):  # a PBS array has at least 2 subjobs
                return _error(inv, "qsub: illegal -J value", 2)
            step = int(m.group(3) or 1)
            task_ids = list(range(int(m.group(1)), int(m.group(2)) + 1, step))
            job.update(array_min=task_ids[0], array_max=task_ids[-1], array_step=step)
            if m.group(4):
                job["throttle"] = int(m.group(4))
        elif opt == "-W":
            key, _, val = value.partition("=")
            if key == "max_run_subjobs":
                if not knows_max_run_subjobs(cfg.get("version") or DEFAULT_VERSION):
                    return _error(inv, "qsub: Undefined attribute  max_run_subjobs", 2)
                job["throttle"] = int(val)
        elif opt == "-l":
            for item in value.split(","):
                key, _, val = item.partition("=")
                try:
                    if key == "walltime":
                        job["time_limit"] = formats.parse_sge_time(val)
                    elif key == "select":
                        for part in val.split(":")[1:]:
                            k, _, v = part.partition("=")
                            if k == "ncpus":
                                job["cpus"] = int(v)
                            elif k == "mem":
                                job["mem_mb"] = _mem_mb(v)
                except ValueError:
                    return _error(inv, f"qsub: Illegal attribute or resource value Resource_List.{key}", 2)
        elif opt == "-o":
            job["pbs"]["stdout"] = value
        elif opt == "-e":
            job["pbs"]["stderr"] = value
        elif opt == "-j":
            job["pbs"]["join"] = value
        elif opt == "-r":
            job["requeue"] = value == "y"
        elif opt == "-V":
            job["pbs"]["export_all"] = True
        elif opt == "-h":
            hold = "user"
        elif opt in ("-q", "-A", "-P"):
            job[{"-q": "queue", "-A": "account", "-P": "project"}[opt]] = value
    if task_ids is not None and len(task_ids) > cfg["max_array_size"]:
        return _error(inv, "qsub: Array job exceeds server or queue size limit", 2)
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        job_id = model.allocate_spooled_job(ctx)
        job.update({
            "job_id": job_id, "name": name, "user": inv.user, "uid": inv.uid, "group": inv.group,
            "gid": os.getegid(), "home": os.path.expanduser("~"), "submit_dir": os.getcwd(),
            "workdir": os.path.expanduser("~"), "argv": command, "command": command[0], "partition": "workq",
            "qos": None, "array": task_ids is not None, "submit_args": " ".join(argv),
        })
        if task_ids is None:
            job.update(array_min=None, array_max=None, array_step=None, array_count=None)
        else:
            job["array_count"] = len(task_ids)
        model.add_submission(ctx, job, task_ids, hold)
    inv.print(f"{job_id}[].{SERVER}" if task_ids is not None else f"{job_id}.{SERVER}")
    return 0


def job_state(rec: Record) -> str:
    """qstat's letter of one job or subjob: finished ones are F (jobs) and X (subjobs)."""
    state = rec["state"]
    if state == "PENDING":
        return "H" if rec["hold"] else "Q"
    if state == "RUNNING":
        return "R"
    if state == "COMPLETING":
        return "E"
    if state == "SUSPENDED":
        return "S"
    return "X" if rec["task_id"] is not None else "F"


#: the Exit_status PBS records for each way the fake ends a job (OpenPBS src/include/job.h JOB_EXEC_*)
EXIT_STATUS = {"TIMEOUT": -29, "OUT_OF_MEMORY": -27, "NODE_FAIL": -20, "PREEMPTED": -12, "BOOT_FAIL": -1}


def exit_status(rec: Record) -> int | None:
    """None for a job deleted before it ran; 256 + N when a signal N ended it (qdel: 271)."""
    state = rec["state"]
    if state in EXIT_STATUS:
        return EXIT_STATUS[state]
    if state == "CANCELLED":
        return 256 + 15 if rec["start_t"] else None
    code, sig = rec["exit"] or [0, 0]
    return 256 + sig if sig else code


def _stamp(t: float | None) -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(t or time.time()))


def _attrs(ctx: Ctx, rec: Record) -> dict[str, Any]:
    job = ctx.job(rec)
    host = socket.gethostname()
    letter = job_state(rec)
    out: dict[str, Any] = {
        "Job_Name": job["name"], "Job_Owner": f"{job['user']}@{host}", "job_state": letter,
        "queue": job.get("queue") or "workq", "server": SERVER, "Checkpoint": "u", "ctime": _stamp(rec["submit_t"]),
        "Error_Path": f"{host}:{job['pbs'].get('stderr') or job['submit_dir']}", "Hold_Types": "u" if rec["hold"] else "n",
        "Join_Path": job["pbs"]["join"], "Keep_Files": "n", "Mail_Points": "a", "mtime": _stamp(ctx.now),
        "Output_Path": f"{host}:{job['pbs'].get('stdout') or job['submit_dir']}", "Priority": 0,
        "qtime": _stamp(rec["submit_t"]), "Rerunable": "True" if job["requeue"] else "False",
        "Resource_List": {"mem": f"{job['mem_mb']}mb"} if job.get("mem_mb") else {},
    }
    out["Resource_List"].update({"ncpus": job["cpus"], "nodect": 1, "place": "pack",
                                 "select": f"1:ncpus={job['cpus']}"})
    if job.get("time_limit"):
        out["Resource_List"]["walltime"] = formats.slurm_clock(job["time_limit"])
    if rec["start_t"]:
        out.update(stime=_stamp(rec["start_t"]), exec_host=f"{ctx.cfg['node']}/0",
                   exec_vnode=f"({ctx.cfg['node']}:ncpus={job['cpus']})")
    out.update(substate={"Q": 10, "H": 20, "R": 42, "E": 51, "S": 43}.get(letter, 92),
               comment=f"Job run at {_stamp(rec['start_t'])} on ({ctx.cfg['node']}:ncpus={job['cpus']})"
               if rec["start_t"] else "Not Running: Insufficient amount of resource: ncpus",
               etime=_stamp(rec["submit_t"]), run_count=rec["restarts"] + (1 if rec["start_t"] else 0))
    if letter in ("F", "X") and exit_status(rec) is not None:
        out["Exit_status"] = exit_status(rec)
    if rec["task_id"] is not None:
        out.update(array_id=f"{job['job_id']}[].{SERVER}", array_index=rec["task_id"])
    out.update(Submit_arguments=job["submit_args"], project="_pbs_project_default",
               Submit_Host=host)
    return out


def _array_attrs(ctx: Ctx, job: dict[str, Any], recs: list[Record]) -> dict[str, Any]:
    counts = {"Queued": 0, "Running": 0, "Exiting": 0, "Expired": 0}
    for rec in recs:
        letter = job_state(rec)
        counts["Queued" if letter in "QH" else "Running" if letter in "RS" else "Exiting" if letter == "E"
               else "Expired"] += 1
    letter = "Q" if counts["Queued"] == len(recs) else "F" if counts["Expired"] == len(recs) else "B"
    done = [r["task_id"] for r in recs if job_state(r) == "X"]
    remaining = sorted(r["task_id"] for r in recs if r["task_id"] not in done)
    return {"Job_Name": job["name"], "Job_Owner": f"{job['user']}@{socket.gethostname()}", "job_state": letter,
            "queue": job.get("queue") or "workq", "server": SERVER, "array": "True",
            "array_state_count": " ".join(f"{k}:{v}" for k, v in counts.items()) + " ",
            "array_indices_submitted": f"{job['array_min']}-{job['array_max']}",
            "array_indices_remaining": formats.slurm_id_ranges(remaining) if remaining else "-",
            "Submit_arguments": job["submit_args"], "project": "_pbs_project_default"}


def _server_json(cfg: dict[str, Any], body: dict[str, Any]) -> str:
    doc = {"timestamp": int(time.time()), "pbs_version": cfg.get("version") or DEFAULT_VERSION,
           "pbs_server": SERVER, **body}
    return json.dumps(doc, indent=4, separators=(",", ":"))  # "key":value, as qstat writes it


def qstat(inv: Invocation, argv: list[str]) -> int:
    """`qstat -f -F json [-x] [-t] [ids]` and `qstat -B -f -F json`; other forms are not faked."""
    state = read_state(inv.paths)
    cfg = state["config"]
    ctx = Ctx(inv.paths, state, now())
    if argv == ["--version"]:
        inv.print(f"pbs_version = {cfg.get('version') or DEFAULT_VERSION}")
        return 0
    if "-B" in argv:
        server = {"server_state": "Active", "server_host": cfg["node"], "scheduling": "True",
                  "total_jobs": len(state["tasks"]), "default_queue": "workq", "job_history_enable": "True",
                  "max_array_size": cfg["max_array_size"], "pbs_version": cfg.get("version") or DEFAULT_VERSION}
        inv.print(_server_json(cfg, {"Server": {SERVER: server}}))
        return 0
    if not ("-f" in argv and "-F" in argv and argv[argv.index("-F") + 1] == "json"):
        return _error(inv, "fake qstat: only -f -F json is implemented", 2)
    history, subjobs = "-x" in argv, "-t" in argv
    ids = [a for a in argv if ID.match(a)]
    jobs: dict[str, Any] = {}
    by_job: dict[int, list[Record]] = {}
    for rec in sorted(ctx.tasks.values(), key=lambda r: (r["job_id"], r["task_id"] or 0)):
        by_job.setdefault(rec["job_id"], []).append(rec)
    for job_id, recs in by_job.items():
        job = ctx.job(recs[0])
        finished = all(job_state(r) in "FX" for r in recs)
        if finished and not history:
            continue
        if ids and not any(int(ID.match(i).group(1)) == job_id for i in ids):
            continue
        if job["array"]:
            jobs[f"{job_id}[].{SERVER}"] = _array_attrs(ctx, job, recs)
            if subjobs:
                for rec in recs:
                    jobs[rec["key"]] = _attrs(ctx, rec)
        else:
            jobs[recs[0]["key"]] = _attrs(ctx, recs[0])
    for wanted in ids:
        if not any(k.split("[")[0].split(".")[0] == ID.match(wanted).group(1) for k in jobs):
            inv.error(f"qstat: Unknown Job Id {wanted}")
    # a server answers without "Jobs" when no job matches
    inv.print(_server_json(cfg, {"Jobs": jobs} if jobs else {}))
    return 153 if ids and len(jobs) == 0 else 0


def _targets(ctx: Ctx, spec: str) -> list[Record] | None:
    m = ID.match(spec)
    if not m:
        return None
    recs = [r for r in ctx.tasks.values() if r["job_id"] == int(m.group(1))]
    if m.group(3):
        recs = [r for r in recs if r["task_id"] == int(m.group(3))]
    return recs or None


def qdel(inv: Invocation, argv: list[str]) -> int:
    """Delete jobs, arrays or subjobs; silent on success (PBS), `Unknown Job Id` rc 153, a finished job
    `Job has finished` rc 35."""
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        for spec in [a for a in argv if not a.startswith("-")]:
            recs = _targets(ctx, spec)
            if recs is None:
                inv.error(f"qdel: Unknown Job Id {spec}")
                rc = 153
                continue
            live = [r for r in recs if r["state"] in model.ACTIVE]
            if not live:
                inv.error(f"qdel: Job has finished {spec}")
                rc = rc or 35
            for rec in live:
                model.begin_termination(ctx, rec, "cancel")
    return rc


def qalter(inv: Invocation, argv: list[str]) -> int:
    """`qalter -W max_run_subjobs=N 12[].server`."""
    if len(argv) != 3 or argv[0] != "-W" or not argv[1].startswith("max_run_subjobs="):
        return _error(inv, "fake qalter: only -W max_run_subjobs=N is implemented", 2)
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        recs = _targets(ctx, argv[2])
        if recs is None:
            return _error(inv, f"qalter: Unknown Job Id {argv[2]}", 153)
        ctx.job(recs[0])["throttle"] = int(argv[1].split("=", 1)[1])
    return 0


def qselect(inv: Invocation, argv: list[str]) -> int:
    """`qselect -N name`: the ids of the unfinished jobs and arrays of that name, one per line."""
    name = argv[argv.index("-N") + 1] if "-N" in argv else None
    state = read_state(inv.paths)
    ctx = Ctx(inv.paths, state, now())
    seen: list[str] = []
    for rec in sorted(ctx.tasks.values(), key=lambda r: (r["job_id"], r["task_id"] or 0)):
        job = ctx.job(rec)
        ident = f"{job['job_id']}[].{SERVER}" if job["array"] else rec["key"]
        if rec["state"] in model.ACTIVE and (name is None or job["name"] == name) and ident not in seen:
            seen.append(ident)
    for ident in seen:
        inv.print(ident)
    return 0
