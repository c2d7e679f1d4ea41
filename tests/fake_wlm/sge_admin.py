"""Fake `qalter`, `qmod`, `qacct`, `qconf` (SGE 8.1.9 subset)."""
from __future__ import annotations

from . import formats, model
from .cli import Invocation
from .model import Ctx
from .sge_query import NO_JOB, _modified, _specs, _targets
from .store import now, read_jsonl, read_state, transaction


def qalter(inv: Invocation, argv: list[str]) -> int:
    """Change a submitted job: `-tc N` (array task concurrency) and `-h u|n` (hold)."""
    changes: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] not in ("-tc", "-h") or i + 1 >= len(argv):
            inv.error(f'qalter: ERROR! invalid option argument "{argv[i]}"')
            return 2
        changes[argv[i]] = argv[i + 1]
        i += 2
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        for spec in _specs(argv[i:]):
            recs = _targets(ctx, spec)
            if recs is None:
                inv.error(NO_JOB.format(spec.split(".")[0]))
                rc = 1
                continue
            job = ctx.job(recs[0])
            if "-tc" in changes:
                job["throttle"] = int(changes["-tc"]) or None
                inv.print(f"modified task concurrency of job {job['job_id']}")
            if "-h" in changes:
                for rec in recs:
                    held = "u" in changes["-h"].lower()
                    if (model.hold(ctx, rec, "user") if held else model.release(ctx, rec)):
                        inv.print(_modified("hold", ctx, rec))
    return rc


def qmod(inv: Invocation, argv: list[str]) -> int:
    """`-cj` clear Eqw, `-rj` reschedule, `-sj`/`-usj` suspend/resume, `-cq`/`-e`/`-d` queues."""
    if not argv:
        inv.error("qmod: ERROR! no option given")
        return 1
    verb, specs = argv[0], _specs(argv[1:])
    if verb in ("-cq", "-c", "-e", "-d"):
        queue = specs[0] if specs else "all.q"
        if verb in ("-cq", "-c"):
            inv.print(f'Queue instance "{queue}" is already in the specified state: no error')
        else:
            inv.print(f'{inv.user}@vm changed state of "{queue}" ({"enabled" if verb == "-e" else "disabled"})')
        return 0
    if verb not in ("-cj", "-rj", "-sj", "-usj"):
        inv.error(f'qmod: ERROR! invalid option argument "{verb}"')
        return 1
    rc = 0
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        node = ctx.cfg["node"]
        for spec in specs:
            recs = _targets(ctx, spec)
            if recs is None:
                inv.error(NO_JOB.format(spec.split(".")[0]))
                rc = 1
                continue
            for rec in recs:
                job = ctx.job(rec)
                ident = f"job-array task {job['job_id']}.{rec['task_id']}" if job["array"] else f"job {job['job_id']}"
                if verb == "-cj":
                    if rec["state"] != "ERROR":
                        inv.print(f"{ident[0].upper()}{ident[1:]} is not in error state")
                        continue
                    rec.update(state="PENDING", error=None, eligible_t=ctx.now)
                    inv.print(f"{inv.user}@{node} cleared error state of {ident}")
                elif verb == "-rj":
                    if model.apply_action(ctx, rec, "requeue") is None:
                        inv.print(f"Pushed rescheduling of {ident} on host {node}")
                else:
                    action = "suspend" if verb == "-sj" else "resume"
                    if model.apply_action(ctx, rec, action) is None:
                        inv.print(f"{inv.user}@{node} {'suspended' if action == 'suspend' else 'unsuspended'} {ident}")
    return rc


def qacct(inv: Invocation, argv: list[str]) -> int:
    """`-j [id|name]` accounting blocks of finished attempts (written at once, no flush lag)."""
    records = read_jsonl(inv.paths.accounting)
    if "-j" not in argv:
        inv.print("Total System Usage")
        inv.print("    WALLCLOCK         UTIME         STIME           CPU             MEMORY                 IO                IOW")
        total = sum(r["end_t"] - r["start_t"] for r in records)
        inv.print(f"{int(total):>13} {0.0:>13.3f} {0.0:>13.3f} {0.0:>13.3f} {0.0:>18.3f} {0.0:>18.3f} {0.0:>18.3f}")
        return 0
    index = argv.index("-j")
    spec = argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith("-") else None
    tasks = None
    if "-t" in argv and argv.index("-t") + 1 < len(argv):
        first, last, step = formats.parse_sge_range(argv[argv.index("-t") + 1])
        tasks = set(range(first, last + 1, step))
    if spec is not None:
        records = [r for r in records if str(r["job_id"]) == spec or r["name"] == spec]
        if not records:
            inv.error(f"error: job id {spec} not found" if spec.isdigit() else f"error: job name {spec} not found")
            return 1
    if tasks is not None:
        records = [r for r in records if r["task_id"] in tasks]
    for acct in records:
        wall = max(0.0, acct["end_t"] - acct["start_t"])
        failed = acct["failed"]
        status = acct["exit_status"]
        lines = [
            ("qname", "all.q"), ("hostname", "vm"), ("group", acct["group"]), ("owner", acct["owner"]),
            ("project", acct["project"]), ("department", "defaultdepartment"), ("jobname", acct["name"]),
            ("jobnumber", acct["job_id"]),
            ("taskid", acct["task_id"] if acct["task_id"] is not None else "undefined"),
            ("account", acct["account"]), ("priority", 0), ("qsub_time", formats.ctime(acct["submit_t"])),
            ("start_time", formats.ctime(acct["start_t"])), ("end_time", formats.ctime(acct["end_t"])),
            ("granted_pe", acct["granted_pe"]), ("slots", acct["slots"]),
            ("failed", f"{failed:<3} {':' if failed else ''} {model.SGE_FAILED_TEXT.get(failed, '')}".rstrip()),
            ("exit_status", f"{status:<20}" + (f"({_signame(status - 128)})" if status > 128 else "")),
            ("ru_wallclock", f"{wall:.0f}s"), ("ru_utime", "0.000s"), ("ru_stime", "0.000s"),
            ("ru_maxrss", "0.000B"), ("cpu", "0.000s"), ("mem", "0.000GBs"), ("io", "0.000GB"),
            ("iow", "0.000s"), ("maxvmem", _size(acct.get("maxvmem") or 0)), ("arid", "undefined"),
        ]
        if acct.get("category"):  # the job's requests, as qacct prints them
            lines.append(("category", f"-l {acct['category']}"))
        inv.print("=" * 62)
        for key, value in lines:
            inv.print(f"{key:<13}{value}".rstrip())
    return 0


def _size(value: float) -> str:
    """qacct's memory figures: ``0.000B``, ``1.934MB``, ``5.160KB`` (bcgsc/mavis' qacct sample)."""
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= factor:
            return f"{value / factor:.3f}{unit}"
    return f"{value:.3f}B"


def _signame(number: int) -> str:
    names = {9: "Killed", 15: "Terminated", 6: "Aborted", 11: "Segmentation fault", 2: "Interrupt"}
    return names.get(number, f"signal {number}")


def qconf(inv: Invocation, argv: list[str]) -> int:
    """`-sconf` (global config incl. max_aj_tasks = max_array_size), `-sql`, `-spl`, `-sel`."""
    cfg = read_state(inv.paths)["config"]
    if not argv:
        inv.error("qconf: ERROR! no option given")
        return 1
    if argv[0] == "-sconf":
        pairs = [("execd_spool_dir", "/var/spool/gridengine/execd"), ("mailer", "/usr/bin/mail"),
                 ("xterm", "/usr/bin/xterm"), ("load_sensor", "none"), ("prolog", "none"),
                 ("epilog", "none"), ("shell_start_mode", "posix_compliant"),
                 ("login_shells", "sh,bash,ksh,csh,tcsh"), ("min_uid", "0"), ("min_gid", "0"),
                 ("user_lists", "none"), ("xuser_lists", "none"), ("projects", "none"),
                 ("xprojects", "none"), ("enforce_project", "false"), ("enforce_user", "auto"),
                 ("load_report_time", "00:00:10"), ("max_unheard", "00:00:30"),
                 ("reschedule_unknown", "00:00:30"), ("loglevel", "log_warning"),
                 ("administrator_mail", "root"), ("finished_jobs", "100"), ("gid_range", "65400-65500"),
                 ("max_aj_instances", str(cfg["max_aj_instances"])),
                 ("max_aj_tasks", str(cfg["max_array_size"])), ("max_u_jobs", "0"), ("max_jobs", "0"),
                 ("max_advance_reservations", "0"), ("auto_user_oticket", "0"),
                 ("auto_user_fshare", "0"), ("auto_user_default_project", "none"),
                 ("auto_user_delete_time", "86400"), ("delegated_file_staging", "false"),
                 ("reprioritize", "0"), ("jsv_url", "none"), ("jsv_allowed_mod", "ac,h,i,e,o,j,M,N,p,w")]
        inv.print("#global:")
        for key, value in pairs:
            inv.print(f"{key:<28} {value}")
        return 0
    simple = {"-sql": cfg["queue"], "-spl": "smp", "-sel": cfg["node"], "-ss": cfg["node"],
              "-sh": cfg["node"], "-shgrpl": "@allhosts"}
    if argv[0] in simple:
        inv.print(simple[argv[0]])
        return 0
    inv.error(f'error: invalid option argument "{argv[0]}"')
    return 1
