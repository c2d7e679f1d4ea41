"""Fake `scontrol` and `sacct` (SLURM 22.05 subset)."""
from __future__ import annotations

from typing import Any

from . import formats, model
from .cli import Invocation, gnu_getopt
from .model import Ctx
from .slurm_query import View, collapse_pending, known_user, match_spec, parse_states, views
from .store import now, read_jsonl, read_state, transaction

SLURM_VERSION = "22.05.8"


def _config_lines(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("AccountingStorageType", "accounting_storage/slurmdbd"), ("BatchStartTimeout", "10 sec"),
        ("ClusterName", cfg["cluster"]), ("DefMemPerCPU", "1024"), ("JobAcctGatherFrequency", "task=1"),
        ("JobRequeue", "1" if cfg["job_requeue"] else "0"),
        ("KillWait", f"{_secs(cfg['kill_wait'])} sec"), ("MaxArraySize", str(cfg["max_array_size"])),
        ("MaxJobCount", str(cfg["max_job_count"])), ("MessageTimeout", "10 sec"),
        ("MinJobAge", f"{_secs(cfg['min_job_age'])} sec"), ("PriorityType", "priority/multifactor"),
        ("ProctrackType", "proctrack/cgroup"), ("SchedulerType", "sched/backfill"),
        ("SelectType", "select/cons_tres"), ("SelectTypeParameters", "CR_CORE_MEMORY"),
        ("SLURM_CONF", "/etc/slurm/slurm.conf"), ("SLURM_VERSION", SLURM_VERSION),
        ("SlurmctldHost[0]", cfg["node"]), ("TaskPlugin", "task/cgroup"),
    ]


def _secs(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _show_job_lines(row: View, t: float) -> list[str]:
    state = row["state"]
    ids = f"JobId={row['raw_id'] or row['job_id']}"
    if row["array"]:
        task = row.get("task_spec") or str(row["task_id"])
        ids += f" ArrayJobId={row['job_id']} ArrayTaskId={task}"
        if row["throttle"]:
            ids += f" ArrayTaskThrottle={row['throttle']}"
    started, ended = row["start_t"], row["end_t"]
    run_time = 0.0 if not started else (ended or t) - started
    code, sig = row["exit"] or [0, 0]
    mem = f"{row['mem_mb']}M" if row["mem_mb"] else "1G"
    return [
        f"{ids} JobName={row['name']}",
        f"   UserId={row['user']}({row['uid']}) GroupId={row['user']}({row['uid']}) MCS_label=N/A",
        f"   Priority=1 Nice=0 Account={row['account'] or '(null)'} QOS={row['qos'] or 'normal'}",
        f"   JobState={state} Reason={row['reason']} Dependency=(null)",
        f"   Requeue={int(bool(row['requeue']))} Restarts={row['restarts']} BatchFlag=1 Reboot=0 "
        f"ExitCode={code}:{sig}",
        f"   RunTime={formats.slurm_clock(run_time)} TimeLimit={formats.slurm_clock(row['time_limit'])} "
        "TimeMin=N/A",
        f"   SubmitTime={formats.iso_time(row['submit_t'])} EligibleTime={formats.iso_time(row['eligible_t'])}",
        f"   StartTime={formats.iso_time(started)} EndTime={formats.iso_time(ended)} Deadline=N/A",
        f"   Partition={row['partition']} AllocNode:Sid={row['node'] or 'vm'}:0",
        f"   NodeList={row['node'] or '(null)'} BatchHost={row['node'] or '(null)'}",
        f"   NumNodes=1 NumCPUs={row['cpus']} NumTasks=1 CPUs/Task={row['cpus']} ReqB:S:C:T=0:0:*:*",
        f"   TRES=cpu={row['cpus']},mem={mem},node=1,billing={row['cpus']}",
        f"   MinCPUsNode={row['cpus']} MinMemoryNode={mem} MinTmpDiskNode=0",
        f"   Command={row['command']}",
        f"   WorkDir={row['workdir']}",
        f"   StdErr={row['stderr_path'] or '(null)'}",
        "   StdIn=/dev/null",
        f"   StdOut={row['stdout_path'] or '(null)'}",
    ]


def scontrol(inv: Invocation, argv: list[str]) -> int:
    """`show config|job`, `requeue`, `hold`, `uhold`, `release`, `suspend`, `resume`,
    `update JobId=N StartTime=now|ArrayTaskThrottle=K`."""
    parsed = gnu_getopt(inv, argv, "odQv", ["oneliner", "details", "quiet", "verbose"])
    if isinstance(parsed, int):
        return parsed
    opts, words = parsed
    oneliner = any(flag in ("-o", "--oneliner") for flag, _ in opts)
    if not words:
        inv.error("scontrol: error: no command given (interactive mode is not supported)")
        return 1
    verb = words[0].lower()
    if verb == "show":
        what = words[1].lower() if len(words) > 1 else ""
        if what.startswith("conf"):
            return _show_config(inv)
        if what in ("job", "jobs", "jobid"):
            return _show_job(inv, words[2] if len(words) > 2 else None, oneliner)
        inv.error(f"invalid entity: {what} for keyword: show")
        return 1
    if verb in ("requeue", "hold", "uhold", "release", "suspend", "resume"):
        return _job_verb(inv, verb, words[1:])
    if verb == "update":
        return _update(inv, words[1:])
    inv.error(f"invalid keyword: {words[0]}")
    return 1


def _show_config(inv: Invocation) -> int:
    cfg = read_state(inv.paths)["config"]
    inv.print(f"Configuration data as of {formats.iso_time(now())}")
    for key, value in _config_lines(cfg):
        inv.print(f"{key:<23} = {value}")
    inv.print("")
    inv.print(f"Slurmctld(primary) at {cfg['node']} is UP")
    return 0


def _show_job(inv: Invocation, spec: str | None, oneliner: bool) -> int:
    _, items = views(inv)
    if spec is not None:
        spec = spec.split("=", 1)[-1]
        hits = match_spec(items, spec)
        if not hits:
            inv.error("slurm_load_jobs error: Invalid job id specified")
            return 1
        items = hits
    elif not items:
        inv.print("No jobs in the system")
        return 0
    t = now()
    blocks = []
    for row in collapse_pending(items):
        lines = _show_job_lines(row, t)
        blocks.append(" ".join(line.strip() for line in lines) if oneliner else "\n".join(lines) + "\n")
    inv.print("\n".join(blocks))
    return 0


def _job_verb(inv: Invocation, verb: str, specs: list[str]) -> int:
    if not specs:
        inv.error(f"scontrol: error: {verb}: job id required")
        return 1
    action = {"uhold": "hold"}.get(verb, verb)
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        for raw_spec in (s for spec in specs for s in spec.split(",") if s):
            spec = raw_spec.split("=", 1)[-1]
            items = [model.public_view(ctx, rec) for rec in state["tasks"].values()]
            hits = match_spec(items, spec)
            if not hits:
                inv.error(f"Invalid job id specified for job {spec}")
                rc = 1
                continue
            errors: dict[str, list[View]] = {}
            for view in hits:
                rec = state["tasks"].get(view["key"])
                if rec is None:
                    continue
                if verb == "uhold":
                    error = None if model.hold(ctx, rec, "user") else "Job has already finished"
                elif action == "hold" and rec["state"] not in model.ACTIVE:
                    error = "Job has already finished"
                else:
                    error = model.apply_action(ctx, rec, action)
                if action == "hold" and error is None and rec["state"] == "PENDING" \
                        and spec != str(rec["job_id"]):
                    model.split_raw_id(ctx, rec)  # a held element is shown on its own line
                errors.setdefault(error or "No error", []).append(view)
            if set(errors) == {"No error"}:
                continue
            rc = 1
            if len(hits) == 1 and not hits[0]["array"]:
                inv.error(f"{next(iter(errors))} for job {spec}")
                continue
            for error, group in errors.items():
                tasks = formats.slurm_id_ranges([v["task_id"] for v in group if v["task_id"] is not None])
                inv.error(f"{group[0]['job_id']}_{tasks}: {error}")
    return rc


def _update(inv: Invocation, words: list[str]) -> int:
    pairs = dict(w.split("=", 1) for w in words if "=" in w)
    lowered = {k.lower(): v for k, v in pairs.items()}
    spec = lowered.get("jobid") or lowered.get("job")
    if spec is None:
        inv.error("scontrol: error: No job id specified")
        return 1
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        hits = match_spec([model.public_view(ctx, r) for r in state["tasks"].values()], spec)
        if not hits:
            inv.error(f"Invalid job id specified for job {spec}")
            return 1
        unknown = set(lowered) - {"jobid", "job", "starttime", "arraytaskthrottle"}
        if unknown:
            inv.error(f"Update of this parameter is not supported: {sorted(unknown)[0]}")
            return 1
        if "arraytaskthrottle" in lowered:
            job = state["jobs"][str(hits[0]["job_id"])]
            throttle = int(lowered["arraytaskthrottle"])
            job["throttle"] = throttle or None  # 0 removes the limit
        for view in hits:
            rec = state["tasks"][view["key"]]
            if lowered.get("starttime", "").lower() == "now":
                rec["eligible_t"] = ctx.now
                if rec["reason"] == "BeginTime":
                    rec["reason"] = "None"
    return 0


SACCT_WIDTH = {"jobid": 12, "jobidraw": 12, "jobname": 10, "partition": 10, "account": 10,
               "alloccpus": 10, "state": 10, "exitcode": 8, "derivedexitcode": 11, "start": 19,
               "end": 19, "submit": 19, "elapsed": 10, "elapsedraw": 10, "timelimit": 10,
               "nodelist": 15, "reqmem": 10, "user": 9, "restarts": 8, "qos": 10, "reason": 20,
               "ncpus": 10, "reqcpus": 8, "maxrss": 10, "workdir": 30}
SACCT_TITLE = {"jobid": "JobID", "jobidraw": "JobIDRaw", "jobname": "JobName", "alloccpus": "AllocCPUS",
               "exitcode": "ExitCode", "derivedexitcode": "DerivedExitCode", "elapsedraw": "ElapsedRaw",
               "timelimit": "Timelimit", "nodelist": "NodeList", "reqmem": "ReqMem", "qos": "QOS",
               "ncpus": "NCPUS", "reqcpus": "ReqCPUS", "maxrss": "MaxRSS", "workdir": "WorkDir"}


def _sacct_value(field: str, row: View, t: float) -> str:
    started, ended = row["start_t"], row["end_t"]
    elapsed = 0.0 if not started else (ended or t) - started
    code, sig = row["exit"] or [0, 0]
    state = row["state"]
    if state == "CANCELLED" and not row.get("step"):
        state = f"CANCELLED by {row.get('cancelled_by', row['uid'])}"
    values = {
        "jobid": row["id"] + (".batch" if row.get("step") else ""),
        "jobidraw": str(row["raw_id"] or row["job_id"]) + (".batch" if row.get("step") else ""),
        "jobname": "batch" if row.get("step") else row["name"],
        "partition": "" if row.get("step") else row["partition"],
        "account": row["account"] or "", "alloccpus": str(row["cpus"]), "ncpus": str(row["cpus"]),
        "reqcpus": str(row["cpus"]), "state": state, "exitcode": f"{code}:{sig}",
        "derivedexitcode": "0:0", "start": formats.iso_time(started) if started else "Unknown",
        "end": formats.iso_time(ended) if ended else "Unknown",
        "submit": formats.iso_time(row["submit_t"]), "elapsed": formats.slurm_clock(elapsed),
        "elapsedraw": str(int(elapsed)), "timelimit": formats.slurm_clock(row["time_limit"]),
        "nodelist": row["node"] or "None assigned", "reqmem": f"{row['mem_mb']}M" if row["mem_mb"] else "1G",
        "user": row["user"], "restarts": str(row["restarts"]), "qos": row["qos"] or "normal",
        "reason": row["reason"], "maxrss": "", "workdir": row["workdir"],
    }
    return values.get(field, "")


def sacct(inv: Invocation, argv: list[str]) -> int:
    """Accounting from the fake's records (finished jobs are kept forever)."""
    parsed = gnu_getopt(inv, argv, "XPpnj:o:s:u:aS:E:DbLM:r:",
                        ["allocations", "parsable2", "parsable", "noheader", "jobs=", "format=",
                         "name=", "state=", "user=", "allusers", "starttime=", "endtime=",
                         "duplicates", "brief", "allclusters", "clusters=", "partition=", "array"])
    if isinstance(parsed, int):
        return parsed
    opts, _ = parsed
    fields = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
    allocations, sep, trailing, header, expand = False, None, False, True, False
    specs: list[str] = []
    names: set[str] | None = None
    states: set[str] | None = None
    users: list[str] | None = None
    for flag, value in opts:
        if flag in ("-X", "--allocations"):
            allocations = True
        elif flag in ("-P", "--parsable2", "-p", "--parsable"):
            sep, trailing = "|", flag in ("-p", "--parsable")
        elif flag in ("-n", "--noheader"):
            header = False
        elif flag in ("-j", "--jobs"):
            specs.extend(s for s in value.split(",") if s)
        elif flag in ("-o", "--format"):
            fields = value
        elif flag == "--name":
            names = set(value.split(","))
        elif flag in ("-s", "--state"):
            states = parse_states(value)
        elif flag in ("-u", "--user"):
            users = known_user(inv, value)
        elif flag == "--array":
            expand = True
    state = read_state(inv.paths)
    ctx = Ctx(inv.paths, state, now())
    items = read_jsonl(inv.paths.archive) + [model.public_view(ctx, r) for r in state["tasks"].values()]
    if specs:
        chosen: dict[str, View] = {}
        for spec in specs:
            chosen.update((v["key"], v) for v in match_spec(items, spec) or [])
        items = [v for v in items if v["key"] in chosen]
    items = [v for v in items if (names is None or v["name"] in names)
             and (states is None or v["state"] in states) and (users is None or v["user"] in users)]
    items.sort(key=lambda v: (v["job_id"], -1 if v["task_id"] is None else v["task_id"]))
    rows: list[View] = []
    for row in items if expand else collapse_pending(items):
        rows.append(row)
        if not allocations and row["start_t"]:
            rows.append(dict(row, step=True))
    columns = []
    for spec in fields.split(","):
        name, _, width = spec.partition("%")
        key = name.strip().lower()
        if key not in SACCT_WIDTH:
            inv.error(f'sacct: error: Invalid field requested: "{name.strip()}"')
            return 1
        columns.append((key, SACCT_TITLE.get(key, key.capitalize()),
                        int(width) if width else SACCT_WIDTH[key]))
    t = now()
    lines: list[str] = []
    if sep:
        if header:
            lines.append(sep.join(title for _, title, _ in columns) + (sep if trailing else ""))
        for row in rows:
            lines.append(sep.join(_sacct_value(k, row, t) for k, _, _ in columns) + (sep if trailing else ""))
    else:
        def cell(text: str, width: int, left: bool) -> str:
            text = text if len(text) <= width else text[:width - 1] + "+"
            return text.ljust(width) if left else text.rjust(width)
        if header:
            lines.append(" ".join(cell(title, w, k.startswith("jobid")) for k, title, w in columns))
            lines.append(" ".join("-" * w for _, _, w in columns))
        for row in rows:
            lines.append(" ".join(cell(_sacct_value(k, row, t), w, k.startswith("jobid"))
                                  for k, _, w in columns))
    if lines:
        inv.print("\n".join(lines))
    return 0

