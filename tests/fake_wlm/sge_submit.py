"""Fake `qsub` (Son of Grid Engine 8.1.9 syntax subset)."""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any

from . import formats, model
from .cli import Invocation
from .model import Ctx
from .store import now, read_jsonl, read_state, transaction

FLAGS = {"-terse", "-V", "-cwd", "-h", "-notify"}
ONE_ARG = {"-N", "-t", "-tc", "-o", "-e", "-j", "-wd", "-S", "-b", "-l", "-q", "-A", "-P", "-r",
           "-hold_jid", "-v", "-m", "-M", "-p", "-now", "-sync", "-js", "-ac", "-c", "-ckpt", "-a",
           "-i", "-R", "-shell", "-C", "-dl", "-w", "-jc", "-masterq", "-soft", "-hard"}
TWO_ARGS = {"-pe", "-binding"}
NO_ARG_SWITCHES = {"-soft", "-hard"}


class UsageError(Exception):
    """A qsub command-line error (printed as `qsub: ...`, exit code 2)."""


def parse_switches(argv: list[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Split argv into ([(switch, values)], [script, args...]); stops at the first non-switch."""
    switches: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return switches, argv[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return switches, argv[i:]
        if arg in FLAGS or arg in NO_ARG_SWITCHES:
            switches.append((arg, []))
            i += 1
            continue
        count = 2 if arg in TWO_ARGS else 1 if arg in ONE_ARG else None
        if count is None:
            raise UsageError(f'ERROR! invalid option argument "{arg}"')
        values = argv[i + 1:i + 1 + count]
        if len(values) < count:
            raise UsageError(f'ERROR! {arg} option must have argument')
        switches.append((arg, values))
        i += 1 + count
    return switches, []


def _directives(script: str) -> list[str]:
    tokens: list[str] = []
    for line in script.splitlines():
        if line.startswith("#$"):
            tokens.extend(shlex.split(line[2:], comments=True))
    return tokens


def qsub(inv: Invocation, argv: list[str]) -> int:
    """Submit a job script (or `-b y` command); prints the SGE submit message or `-terse` id."""
    try:
        switches, rest = parse_switches(argv)
    except UsageError as exc:
        inv.error(f"qsub: {exc}")
        return 2
    opts = {name: values for name, values in switches}
    binary = opts.get("-b", ["n"])[0].lower().startswith("y")
    if not rest and not binary:
        script_path, args, script = None, [], sys.stdin.read()
    elif not rest:
        inv.error("qsub: ERROR! -b y requires a command")
        return 2
    else:
        script_path, args, script = rest[0], rest[1:], ""
    if script_path and not binary:
        try:
            with open(script_path, "rb") as fh:
                script = fh.read().decode("utf-8", "replace")
        except OSError as exc:
            inv.error(f"Unable to read script file because of error: error opening {script_path}: "
                      f"{exc.strerror}")
            return 1
        try:
            embedded, _ = parse_switches(_directives(script))
        except UsageError as exc:
            inv.error(f"qsub: {exc}")
            return 2
        switches = embedded + switches
    try:
        job, task_ids, hold = _build_job(inv, switches, binary, script_path, args)
    except UsageError as exc:
        inv.error(str(exc))
        return 2
    cfg = read_state(inv.paths)["config"]
    verify = opts.get("-w", ["n"])[0]
    if verify in ("v", "e") and job["cpus"] > cfg["slots"]:
        inv.error(f'Unable to run job: Job 1 cannot run in PE "{job["pe"]}" because it only offers 0 slots'
                  + ("\nverification: no suitable queues" if verify == "v" else "") + "\nExiting.")
        return 1
    if verify == "v":  # verify only: nothing is queued
        inv.print("verification: found suitable queue(s)")
        return 0
    if task_ids is not None and len(task_ids) > cfg["max_array_size"]:
        inv.error(f"Unable to run job: job rejected: You try to submit a job with more than "
                  f"{cfg['max_array_size']} tasks.\nExiting.")
        return 1
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        job_id = model.allocate_job_id(state)
        job["job_id"] = job_id
        spool = inv.paths.job_spool(job_id)
        spool.mkdir(parents=True, exist_ok=True)
        if not binary:
            script_file = spool / "script"
            script_file.write_text(script, encoding="utf-8")
            script_file.chmod(0o700)
            job["argv"] = [str(script_file), *args]
        (spool / "env.json").write_text(json.dumps(dict(os.environ)), encoding="utf-8")
        model.add_submission(ctx, job, task_ids, hold)
    terse = "-terse" in opts
    if job["array"]:
        ident = f"{job_id}.{job['array_min']}-{job['array_max']}:{job['array_step']}"
        inv.print(ident if terse else f'Your job-array {ident} ("{job["name"]}") has been submitted')
    else:
        inv.print(str(job_id) if terse else f'Your job {job_id} ("{job["name"]}") has been submitted')
    if opts.get("-sync", ["n"])[0].lower().startswith("y"):
        inv.out.flush()
        return _sync(inv, job_id)
    return 0


def _build_job(inv: Invocation, switches: list[tuple[str, list[str]]], binary: bool,
               script_path: str | None, args: list[str]) -> tuple[dict[str, Any], list[int] | None, str | None]:
    home = os.path.expanduser("~")
    sge: dict[str, Any] = {"binary": binary, "merge": False, "export_all": False, "variables": {}}
    resources: dict[str, str] = {}
    job: dict[str, Any] = {"cpus": 1, "pe": None, "requeue": False, "hold_jids": [], "throttle": None}
    name, workdir, task_ids, hold = None, home, None, None
    for switch, values in switches:
        value = values[0] if values else ""
        if switch == "-N":
            name = value
        elif switch == "-t":
            try:
                first, last, step = formats.parse_sge_range(value)
            except ValueError:
                raise UsageError(f'qsub: ERROR! invalid option argument "-t {value}"') from None
            task_ids = list(range(first, last + 1, step))
            job.update(array_min=first, array_max=last, array_step=step)
        elif switch == "-tc":
            job["throttle"] = int(value)
        elif switch in ("-o", "-e"):
            sge["stdout" if switch == "-o" else "stderr"] = value
        elif switch == "-j":
            sge["merge"] = value.lower().startswith("y")
        elif switch == "-V":
            sge["export_all"] = True
        elif switch == "-cwd":
            workdir = os.getcwd()
        elif switch == "-wd":
            workdir = os.path.abspath(value)
        elif switch == "-S":
            sge["shell"] = value
        elif switch == "-pe":
            job["pe"] = values[0]
            job["cpus"] = int(values[1].split("-")[0] or 1)
        elif switch == "-l":
            for item in value.split(","):
                key, _, val = item.partition("=")
                resources[key.strip()] = val.strip()
        elif switch in ("-q", "-A", "-P"):
            job[{"-q": "queue", "-A": "account", "-P": "project"}[switch]] = value
        elif switch == "-h":
            hold = "user"
        elif switch == "-r":
            job["requeue"] = value.lower().startswith("y")
        elif switch == "-hold_jid":
            job["hold_jids"] += [j for j in value.split(",") if j]
        elif switch == "-v":
            for item in value.split(","):
                key, eq, val = item.partition("=")
                sge["variables"][key] = val if eq else os.environ.get(key, "")
    try:
        time_limit = formats.parse_sge_time(resources["h_rt"]) if "h_rt" in resources else None
        vmem = formats.parse_sge_mem_bytes(resources["h_vmem"]) if "h_vmem" in resources else None
    except ValueError as exc:
        raise UsageError(f'qsub: ERROR! invalid option argument "-l {exc}"') from None
    sge["h_vmem"] = vmem
    sge["resources"] = resources
    command = script_path or "STDIN"
    job.update({
        "name": name or os.path.basename(command), "user": inv.user, "uid": inv.uid,
        "group": inv.group, "gid": os.getegid(), "home": home, "submit_dir": os.getcwd(),
        "workdir": workdir, "argv": [script_path or "", *args], "command": command,
        "time_limit": time_limit, "mem_mb": None, "partition": "all.q", "qos": None,
        "array": task_ids is not None, "sge": sge,
    })
    if task_ids is not None:
        job["array_count"] = len(task_ids)
    else:
        job.update(array_min=None, array_max=None, array_step=None, array_count=None)
    return job, task_ids, hold


def _sync(inv: Invocation, job_id: int) -> int:
    """`-sync y`: wait for all tasks, print `Job N exited with exit code X.` lines."""
    while True:
        state = read_state(inv.paths)
        active = [r for r in state["tasks"].values() if r["job_id"] == job_id and r["state"] in model.ACTIVE]
        if not active:
            break
        time.sleep(0.1)
    records = [a for a in read_jsonl(inv.paths.accounting) if a["job_id"] == job_id]
    worst = 0
    for acct in records:
        ident = f"{job_id}.{acct['task_id']}" if acct["task_id"] is not None else str(job_id)
        inv.print(f"Job {ident} exited with exit code {acct['exit_status']}.")
        worst = max(worst, acct["exit_status"])
    return worst
