"""Fake `squeue` and `scancel` (SLURM 22.05 subset), plus id selection shared with scontrol/sacct."""
from __future__ import annotations

import pwd
import re
import signal
from typing import Any, Callable

from . import formats, model
from .cli import Invocation, gnu_getopt
from .model import Ctx
from .store import now, read_state, transaction

View = dict[str, Any]
JOB_SPEC = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?$")
DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
LONG_FORMAT = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
HEADERS = {
    "i": "JOBID", "A": "JOBID", "F": "ARRAY_JOB_ID", "K": "ARRAY_TASK_ID", "T": "STATE", "t": "ST",
    "r": "REASON", "R": "NODELIST(REASON)", "j": "NAME", "M": "TIME", "l": "TIME_LIMIT",
    "L": "TIME_LEFT", "N": "NODELIST", "P": "PARTITION", "u": "USER", "D": "NODES", "C": "CPUS",
    "a": "ACCOUNT", "q": "QOS", "S": "START_TIME", "V": "SUBMIT_TIME", "e": "END_TIME",
    "m": "MIN_MEMORY", "o": "COMMAND", "Z": "WORK_DIR", "y": "NICE", "p": "PRIORITY",
}
REASON_STATES = {"PENDING", "TIMEOUT", "OUT_OF_MEMORY", "FAILED"}
DEFAULT_STATES = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING"}


def views(inv: Invocation) -> tuple[dict[str, Any], list[View]]:
    """(config, public views of all records still known to the controller)."""
    state = read_state(inv.paths)
    ctx = Ctx(inv.paths, state, now())
    return state["config"], [model.public_view(ctx, rec) for rec in state["tasks"].values()]


def match_spec(items: list[View], spec: str) -> list[View] | None:
    """Elements matching `A`, `A_i`, `A_[i-j]` or a raw id; None if the spec is malformed."""
    match = JOB_SPEC.match(spec.strip())
    if not match:
        return None
    job_id, part = int(match.group(1)), match.group(2)
    if part is None:
        hits = [v for v in items if v["job_id"] == job_id]
        return hits or [v for v in items if v["raw_id"] == job_id]
    try:
        ids = set(formats.parse_slurm_array(part[1:-1])[0]) if part.startswith("[") else {int(part)}
    except ValueError:
        return None
    return [v for v in items if v["job_id"] == job_id and v["task_id"] in ids]


def parse_states(text: str) -> set[str] | None:
    """`-t` list (names or compact codes, or `all`) → internal state names; None if invalid."""
    wanted: set[str] = set()
    by_code = {code: name for name, code in model.SLURM_CODES.items()}
    for token in text.upper().split(","):
        if token == "ALL":
            return set(model.SLURM_CODES)
        name = token if token in model.SLURM_CODES else by_code.get(token)
        if name is None:
            return None
        wanted.add(name)
    return wanted


def known_user(inv: Invocation, names: str) -> list[str] | None:
    users = []
    for name in names.split(","):
        try:
            users.append(pwd.getpwnam(name).pw_name if not name.isdigit() else pwd.getpwuid(int(name)).pw_name)
        except KeyError:
            return None
    return users


def collapse_pending(items: list[View]) -> list[View]:
    """Merge the not-yet-split PENDING elements of each array into one `A_[2-7%2]` row."""
    rows: list[View] = []
    groups: dict[int, View] = {}
    for item in items:
        if item["array"] and item["state"] == "PENDING" and item["raw_id"] is None:
            group = groups.get(item["job_id"])
            if group is None:
                group = dict(item, task_ids=[])
                groups[item["job_id"]] = group
                rows.append(group)
            group["task_ids"].append(item["task_id"])
            continue
        rows.append(item)
    for group in groups.values():
        spec = formats.slurm_id_ranges(group["task_ids"])
        if group["throttle"]:
            spec += f"%{group['throttle']}"
        group["task_spec"] = spec
        group["id"] = f"{group['job_id']}_{spec}" if len(group["task_ids"]) == 1 and not group["throttle"] \
            else f"{group['job_id']}_[{spec}]"
    return rows


def field_value(letter: str, row: View, t: float) -> str:
    """Value of one squeue format letter for a row."""
    state = row["state"]
    started = row["start_t"]
    elapsed = 0.0 if not started else (row["end_t"] or t) - started
    if letter == "i":
        return row["id"]
    if letter == "A":
        return str(row["raw_id"] or row["job_id"])
    if letter == "F":
        return str(row["job_id"])
    if letter == "K":
        return row.get("task_spec") or (str(row["task_id"]) if row["task_id"] is not None else "N/A")
    if letter == "T":
        return state
    if letter == "t":
        return model.SLURM_CODES[state]
    if letter == "r":
        return row["reason"]
    if letter == "R":
        return f"({row['reason']})" if state in REASON_STATES else (row["node"] or "")
    if letter == "M":
        return formats.slurm_duration(elapsed)
    if letter == "l":
        return formats.slurm_duration(row["time_limit"])
    if letter == "L":
        limit = row["time_limit"]
        return "UNLIMITED" if limit is None else formats.slurm_duration(max(0.0, limit - elapsed))
    simple: dict[str, Callable[[], str]] = {
        "j": lambda: row["name"], "N": lambda: row["node"] or "", "P": lambda: row["partition"],
        "u": lambda: row["user"], "D": lambda: "1", "C": lambda: str(row["cpus"]),
        "a": lambda: row["account"] or "(null)", "q": lambda: row["qos"] or "normal",
        "S": lambda: formats.iso_time(started) if started else "N/A",
        "V": lambda: formats.iso_time(row["submit_t"]),
        "e": lambda: formats.iso_time(row["end_t"]) if row["end_t"] else "N/A",
        "m": lambda: f"{row['mem_mb']}M" if row["mem_mb"] else "0", "o": lambda: row["argv"][0],
        "Z": lambda: row["workdir"], "y": lambda: "0", "p": lambda: "0.99998474",
    }
    return simple[letter]() if letter in simple else ""


def render(fmt: str, row: View | None, t: float) -> str:
    """Apply an `-o` format (`%[.][width]letter` and literal text) to a row, or the header."""
    def repl(match: re.Match[str]) -> str:
        right, width, letter = match.group(1), match.group(2), match.group(3)
        if letter == "%":
            return "%"
        text = HEADERS.get(letter, letter.upper()) if row is None else field_value(letter, row, t)
        if width:
            size = int(width)
            text = text[:size]
            text = text.rjust(size) if right else text.ljust(size)
        return text
    return re.sub(r"%(\.)?(\d*)([a-zA-Z%])", repl, fmt)


def squeue(inv: Invocation, argv: list[str]) -> int:
    """List jobs (default: not finished; `-t all` adds those within MinJobAge)."""
    parsed = gnu_getopt(inv, argv, "hrt:n:j:u:o:p:A:q:lS:aM:i:v",
                        ["noheader", "array", "states=", "name=", "jobs=", "user=", "format=",
                         "partition=", "account=", "qos=", "me", "long", "sort=", "all", "help",
                         "noconvert", "verbose"])
    if isinstance(parsed, int):
        return parsed
    opts, _ = parsed
    cfg, items = views(inv)
    t = now()
    fmt, header, expand = DEFAULT_FORMAT, True, False
    states: set[str] | None = None
    job_specs: list[str] = []
    filters: list[Callable[[View], bool]] = []
    for flag, value in opts:
        if flag in ("-h", "--noheader"):
            header = False
        elif flag in ("-r", "--array"):
            expand = True
        elif flag in ("-t", "--states"):
            states = parse_states(value)
            if states is None:
                inv.error(f"squeue: error: Invalid job state specified: {value}")
                return 1
        elif flag in ("-n", "--name"):
            names = set(value.split(","))
            filters.append(lambda v, names=names: v["name"] in names)
        elif flag in ("-j", "--jobs"):
            job_specs.extend(s for s in value.split(",") if s)
        elif flag in ("-u", "--user", "--me"):
            users = [inv.user] if flag == "--me" else known_user(inv, value)
            if users is None:
                inv.error(f"squeue: error: Invalid user: {value}")
                return 1
            filters.append(lambda v, users=set(users): v["user"] in users)
        elif flag in ("-o", "--format"):
            fmt = value
        elif flag in ("-l", "--long"):
            fmt = LONG_FORMAT
        elif flag in ("-p", "--partition"):
            filters.append(lambda v, parts=set(value.split(",")): v["partition"] in parts)
        elif flag in ("-A", "--account"):
            filters.append(lambda v, accts=set(value.split(",")): (v["account"] or "") in accts)
        elif flag in ("-q", "--qos"):
            filters.append(lambda v, qos=set(value.split(",")): (v["qos"] or "normal") in qos)
    if job_specs:
        selected: dict[str, View] = {}
        for spec in job_specs:
            hits = match_spec(items, spec)
            if not hits and len(job_specs) == 1:
                inv.error("slurm_load_jobs error: Invalid job id specified")
                return 1
            selected.update((v["key"], v) for v in hits or [])
        items = [v for v in items if v["key"] in selected]
        states = states or set(model.SLURM_CODES)
    states = states or DEFAULT_STATES
    items = [v for v in items if v["state"] in states and all(f(v) for f in filters)]
    items.sort(key=lambda v: (model.SLURM_CODES[v["state"]], v["job_id"],
                              -1 if v["task_id"] is None else v["task_id"]))
    rows = items if expand else collapse_pending(items)
    lines = [render(fmt, None, t)] if header else []
    lines.extend(render(fmt, row, t) for row in rows)
    if lines:
        inv.print("\n".join(lines))
    return 0


def scancel(inv: Invocation, argv: list[str]) -> int:
    """Cancel (or signal) jobs; unknown ids are silently ignored like the real one."""
    parsed = gnu_getopt(inv, argv, "n:u:s:t:p:A:q:bfQvi",
                        ["name=", "user=", "signal=", "state=", "partition=", "account=", "qos=",
                         "me", "batch", "full", "quiet", "verbose", "interactive"])
    if isinstance(parsed, int):
        return parsed
    opts, specs = parsed
    filters: list[Callable[[View], bool]] = []
    sig: int | None = None
    for flag, value in opts:
        if flag in ("-n", "--name"):
            filters.append(lambda v, names=set(value.split(",")): v["name"] in names)
        elif flag in ("-u", "--user", "--me"):
            users = [inv.user] if flag == "--me" else known_user(inv, value)
            if users is None:
                inv.error(f"scancel: error: Invalid user name: {value}")
                return 1
            filters.append(lambda v, users=set(users): v["user"] in users)
        elif flag in ("-t", "--state"):
            wanted = parse_states(value)
            if wanted is None:
                inv.error(f"scancel: error: Invalid job state specified: {value}")
                return 1
            filters.append(lambda v, wanted=wanted: v["state"] in wanted)
        elif flag in ("-p", "--partition"):
            filters.append(lambda v, parts=set(value.split(",")): v["partition"] in parts)
        elif flag in ("-s", "--signal"):
            try:
                sig = int(value) if value.isdigit() else int(signal.Signals["SIG" + value.upper().removeprefix("SIG")])
            except KeyError:
                inv.error(f"scancel: error: Invalid job signal: {value}")
                return 1
    specs = [s for spec in specs for s in spec.split(",") if s]
    if not specs and not filters:
        inv.error("scancel: error: No job identification provided")
        return 1
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        items = [model.public_view(ctx, rec) for rec in state["tasks"].values()]
        if specs:
            chosen: dict[str, View] = {}
            for spec in specs:
                hits = match_spec(items, spec)
                if hits is None:
                    inv.error(f"scancel: error: Invalid job id {spec}")
                    rc = 1
                    continue
                chosen.update((v["key"], v) for v in hits)
            items = list(chosen.values())
        items = [v for v in items if all(f(v) for f in filters)]
        finished = [v for v in items if v["state"] not in model.ACTIVE]
        for view in items:
            rec = state["tasks"][view["key"]]
            if sig is not None:
                if rec["state"] in model.RUNNING_LIKE and rec["pid"]:
                    rec["signals"].append(sig)
            elif rec["state"] in model.ACTIVE:
                model.begin_termination(ctx, rec, "cancel")
        if specs and items and len(finished) == len(items) and sig is None:
            inv.error(f"scancel: error: Kill job error on job id {specs[0]}: "
                      "Job/step already completing or completed")
            rc = 1
    return rc

