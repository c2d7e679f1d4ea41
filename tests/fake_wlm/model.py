"""Job-element records and their state transitions, shared by the daemon, the CLIs and the API.

A submission ("job") lives in ``state["jobs"][str(job_id)]``; each array element (or the single
element of a plain job) is a record in ``state["tasks"][key]`` where key is the id as the CLIs
print it (SLURM ``12`` / ``12_3``, SGE ``12`` / ``12.3``). Internal state names are SLURM's, plus
``ERROR`` for SGE's ``Eqw``. Processes are only touched by the daemon: other callers set
``rec["kill"]`` / ``rec["signals"]`` and the daemon delivers them.
"""
from __future__ import annotations

import random
import signal
from typing import Any

from .store import State, StatePaths, append_jsonl

Record = dict[str, Any]

PBS_SERVER = "server"  # the fake PBS server's name, the suffix of its job ids
RUNNING_LIKE = {"RUNNING", "SUSPENDED", "COMPLETING"}
ACTIVE = {"PENDING", "ERROR"} | RUNNING_LIKE
SLURM_CODES = {
    "PENDING": "PD", "RUNNING": "R", "SUSPENDED": "S", "COMPLETING": "CG", "COMPLETED": "CD",
    "FAILED": "F", "CANCELLED": "CA", "TIMEOUT": "TO", "OUT_OF_MEMORY": "OOM", "NODE_FAIL": "NF",
    "PREEMPTED": "PR", "BOOT_FAIL": "BF", "REQUEUED": "RQ", "SPECIAL_EXIT": "SE",
}
SGE_FAILED_TEXT = {
    0: "", 1: "assumedly before job", 25: "rescheduling", 26: "opening input/output file",
    28: "changing into working directory", 30: "application error returned",
    37: "qmaster enforced h_rt, h_cpu, or h_vmem limit", 100: "assumedly after job",
}
# action -> SLURM state/reason/ExitCode, first signal, SGE qacct failed/exit_status
OUTCOMES: dict[str, dict[str, Any]] = {
    "cancel": dict(state="CANCELLED", reason="None", exit=[0, 0], sig=signal.SIGTERM, failed=100, status=137),
    "node_fail": dict(state="NODE_FAIL", reason="NodeDown", exit=[0, 0], sig=signal.SIGKILL, failed=100, status=137),
    "oom": dict(state="OUT_OF_MEMORY", reason="OutOfMemory", exit=[0, 125], sig=signal.SIGKILL, failed=37, status=137),
    "timeout": dict(state="TIMEOUT", reason="TimeLimit", exit=[0, 0], sig=signal.SIGTERM, failed=37, status=137),
    "preempt": dict(state="PREEMPTED", reason="None", exit=[0, 0], sig=signal.SIGTERM, failed=100, status=137),
    "boot_fail": dict(state="BOOT_FAIL", reason="None", exit=[0, 0], sig=signal.SIGKILL, failed=1, status=0),
    "requeue": dict(state="PENDING", reason="BeginTime", exit=[0, 0], sig=signal.SIGTERM, failed=25, status=137),
    "eqw": dict(state="ERROR", reason="None", exit=[0, 0], sig=signal.SIGKILL, failed=100, status=137),
    "vanish": dict(state="CANCELLED", reason="None", exit=[0, 0], sig=signal.SIGKILL, failed=100, status=137),
}
FAULT_ACTIONS = ("kill", "node_fail", "oom", "timeout", "preempt", "boot_fail", "vanish", "requeue",
                 "hold", "release", "eqw", "suspend", "resume")


class Ctx:
    """A locked state plus the moment the current operation happens."""

    def __init__(self, paths: StatePaths, state: State, now: float) -> None:
        self.paths = paths
        self.state = state
        self.now = now

    @property
    def cfg(self) -> dict[str, Any]:
        return self.state["config"]

    @property
    def flavor(self) -> str:
        return self.state["config"]["flavor"]

    @property
    def tasks(self) -> dict[str, Record]:
        return self.state["tasks"]

    def job(self, rec: Record) -> dict[str, Any]:
        return self.state["jobs"][str(rec["job_id"])]


def task_key(flavor: str, job_id: int, task_id: int | None) -> str:
    """Element id as the CLIs print it."""
    if flavor == "pbs":
        return f"{job_id}.{PBS_SERVER}" if task_id is None else f"{job_id}[{task_id}].{PBS_SERVER}"
    if task_id is None:
        return str(job_id)
    if flavor == "lsf":
        return f"{job_id}[{task_id}]"
    return f"{job_id}_{task_id}" if flavor == "slurm" else f"{job_id}.{task_id}"


def allocate_job_id(state: State) -> int:
    """Next job id (SLURM raw ids share the counter, like slurmctld)."""
    job_id = state["next_id"]
    state["next_id"] = job_id + 1
    return job_id


def allocate_spooled_job(ctx: Ctx) -> int:
    """A new job id and its spool directory holding the submitting environment (env.json)."""
    import json
    import os
    job_id = allocate_job_id(ctx.state)
    spool = ctx.paths.job_spool(job_id)
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "env.json").write_text(json.dumps(dict(os.environ)), encoding="utf-8")
    return job_id


def add_submission(ctx: Ctx, job: dict[str, Any], task_ids: list[int] | None, hold: str | None) -> None:
    """Store a submission and one PENDING record per element."""
    ctx.state["jobs"][str(job["job_id"])] = job
    for task_id in task_ids if task_ids is not None else [None]:
        key = task_key(ctx.flavor, job["job_id"], task_id)
        ctx.tasks[key] = {
            "key": key, "job_id": job["job_id"], "task_id": task_id,
            "raw_id": job["job_id"] if task_id is None else None,
            "state": "PENDING", "reason": _hold_reason(hold) if hold else "None", "hold": hold,
            "restarts": 0, "requeued": False, "submit_t": ctx.now, "eligible_t": ctx.now,
            "start_t": None, "end_t": None, "exit": None, "pid": None, "kill": None,
            "armed": [], "signals": [], "error": None, "node": None,
            "stdout_path": None, "stderr_path": None,
        }


def split_raw_id(ctx: Ctx, rec: Record) -> None:
    """Give a SLURM array element its own raw job id; the last one keeps the array id."""
    if rec["raw_id"] is not None:
        return
    others = [r for r in ctx.tasks.values() if r["job_id"] == rec["job_id"] and r is not rec
              and r["raw_id"] is None and r["state"] == "PENDING"]
    rec["raw_id"] = rec["job_id"] if not others else allocate_job_id(ctx.state)


def _hold_reason(hold: str | None) -> str:
    return "JobHeldAdmin" if hold == "admin" else "JobHeldUser"


def arm_rules(ctx: Ctx, rec: Record) -> None:
    """Evaluate fault rules for an element that is starting now."""
    ctx.state["start_count"] += 1
    nth = ctx.state["start_count"]
    job = ctx.job(rec)
    for rule in ctx.state["rules"]:
        if rule["times"] <= 0:
            continue
        if rule.get("name") is not None and rule["name"] != job["name"]:
            continue
        if rule.get("job") is not None and str(rule["job"]) != str(rec["job_id"]):
            continue
        if rule.get("index") is not None and rule["index"] != rec["task_id"]:
            continue
        if rule.get("nth_start") is not None and rule["nth_start"] != nth:
            continue
        if rule.get("probability") is not None:
            if random.Random(f"{rule.get('seed')}:{rule['id']}:{nth}").random() >= rule["probability"]:
                continue
        rule["times"] -= 1
        rule["armed"] = rule.get("armed", 0) + 1
        rec["armed"].append({"action": rule["action"], "at": ctx.now + rule["after"],
                             "attempt": rec["restarts"], "rule": rule["id"]})


def begin_termination(ctx: Ctx, rec: Record, action: str) -> bool:
    """End an element with `action`'s outcome: kill its process first if it has one."""
    if rec["state"] in RUNNING_LIKE and rec["pid"]:
        if rec["kill"]:
            return False
        sig = OUTCOMES[action]["sig"]
        if action == "timeout" and ctx.flavor == "sge":
            sig = signal.SIGKILL  # h_rt is a hard SIGKILL
        rec["kill"] = {"action": action, "sig": int(sig), "sent_t": None}
        rec["state"] = "COMPLETING"
        if action == "timeout" and ctx.flavor == "slurm":
            rec["reason"] = "TimeLimit"
        return True
    if rec["state"] in ("PENDING", "ERROR"):
        finish(ctx, rec, action, ran=False)
        return True
    return False


def finish_killed(ctx: Ctx, rec: Record) -> None:
    """The process of an element with a kill request is gone: apply the requested outcome."""
    action = rec["kill"]["action"]
    job = ctx.job(rec)
    if action in ("preempt", "node_fail") and _reruns(ctx, job):
        _account(ctx, rec, OUTCOMES[action]["failed"], OUTCOMES[action]["status"])
        requeue_now(ctx, rec)
        return
    finish(ctx, rec, action, ran=True)


def _reruns(ctx: Ctx, job: dict[str, Any]) -> bool:
    return bool(job.get("requeue"))


def finish(ctx: Ctx, rec: Record, action: str, ran: bool) -> None:
    """Terminal (or requeue/error/vanish) bookkeeping for `action`."""
    out = OUTCOMES[action]
    if ran:
        _account(ctx, rec, out["failed"], out["status"], at_memory_limit=action == "oom")
    if action == "vanish":
        ctx.tasks.pop(rec["key"], None)
        return
    if action == "requeue":
        requeue_now(ctx, rec)
        return
    if action == "eqw":
        to_error(ctx, rec, "error: job set to error state by fault injection")
        return
    _terminal(ctx, rec, out["state"], out["reason"], out["exit"])
    if action == "cancel":
        rec["cancelled_by"] = ctx.cfg["uid"]


def finish_exited(ctx: Ctx, rec: Record, returncode: int) -> None:
    """The element's process exited on its own with `returncode` (negative: killed by signal)."""
    code, sig = (returncode, 0) if returncode >= 0 else (0, -returncode)
    if ctx.flavor == "sge":
        status = code if not sig else 128 + sig
        if code == 99:
            _account(ctx, rec, 25, status)
            requeue_now(ctx, rec)
        elif code == 100:
            _account(ctx, rec, 30, status)
            to_error(ctx, rec, "exit_status of job start = 100")
        else:
            _account(ctx, rec, 0, status)
            _terminal(ctx, rec, "COMPLETED" if status == 0 else "FAILED", "None", [status, 0])
        return
    if code == 0 and not sig:
        _terminal(ctx, rec, "COMPLETED", "None", [0, 0])
    elif sig:
        name = signal.Signals(sig).name[3:].capitalize() if sig in signal.valid_signals() else str(sig)
        _terminal(ctx, rec, "FAILED", f"RaisedSignal:{sig}({name})", [0, sig])
    else:
        _terminal(ctx, rec, "FAILED", "NonZeroExitCode", [code, 0])


def fail_launch(ctx: Ctx, rec: Record, message: str, sge_failed: int) -> None:
    """The element could not be started (bad output path, cwd, interpreter)."""
    if ctx.flavor == "sge":
        rec["start_t"] = rec["start_t"] or ctx.now
        _account(ctx, rec, sge_failed, 0)
        to_error(ctx, rec, message)
    else:
        rec["start_t"] = rec["start_t"] or ctx.now
        rec["node"] = ctx.cfg["node"]
        _terminal(ctx, rec, "FAILED", "JobLaunchFailure", [0, 53])


def _terminal(ctx: Ctx, rec: Record, state: str, reason: str, exit_code: list[int]) -> None:
    rec.update(state=state, reason=reason, exit=exit_code, end_t=ctx.now, pid=None, kill=None,
               armed=[], signals=[])


def requeue_now(ctx: Ctx, rec: Record) -> None:
    """Put an element back to PENDING (same ids, restarts + 1, eligible after requeue_delay)."""
    held = rec["hold"]
    rec.update(state="PENDING", reason=_hold_reason(held) if held else
               ("BeginTime" if ctx.flavor == "slurm" else "None"),
               eligible_t=ctx.now + ctx.cfg["requeue_delay"], start_t=None, end_t=None, exit=None,
               pid=None, kill=None, armed=[], signals=[], node=None, requeued=True,
               restarts=rec["restarts"] + 1)


def to_error(ctx: Ctx, rec: Record, message: str) -> None:
    """SGE `Eqw`: parked until qdel or `qmod -cj`."""
    rec.update(state="ERROR", error={"t": ctx.now, "message": message}, pid=None, kill=None,
               armed=[], signals=[], end_t=None, node=None)


def _account(ctx: Ctx, rec: Record, failed: int, status: int, at_memory_limit: bool = False) -> None:
    """Append a qacct record for an attempt that reached the execution host (SGE only); an attempt killed
    at its h_vmem records that much as its peak (maxvmem)."""
    if ctx.flavor != "sge" or rec["start_t"] is None:
        return
    job = ctx.job(rec)
    resources = job.get("sge", {}).get("resources", {})
    append_jsonl(ctx.paths.accounting, {
        "job_id": rec["job_id"], "task_id": rec["task_id"], "name": job["name"],
        "owner": job["user"], "group": job["group"], "account": job.get("account") or "sge",
        "project": job.get("project") or "NONE", "granted_pe": job.get("pe") or "NONE",
        "slots": job["cpus"], "submit_t": rec["submit_t"], "start_t": rec["start_t"],
        "end_t": ctx.now, "failed": failed, "exit_status": status,
        "category": ",".join(f"{k}={v}" for k, v in resources.items() if k in ("h_rt", "h_vmem")),
        "maxvmem": job["sge"].get("h_vmem") or 0 if at_memory_limit else 0,
    })


def hold(ctx: Ctx, rec: Record, who: str) -> bool:
    """User/admin hold; a running element keeps running (reason / `hr` only)."""
    if rec["state"] not in ACTIVE:
        return False
    rec["hold"] = who
    if rec["state"] in ("PENDING", "RUNNING", "SUSPENDED"):
        rec["reason"] = _hold_reason(who)
    return True


def release(ctx: Ctx, rec: Record) -> bool:
    """Clear a hold."""
    if rec["state"] not in ACTIVE or not rec["hold"]:
        return False
    rec["hold"] = None
    if rec["reason"] in ("JobHeldUser", "JobHeldAdmin"):
        rec["reason"] = "None"
    return True


def apply_action(ctx: Ctx, rec: Record, action: str) -> str | None:
    """Apply a fault/admin action to one element now; returns an error text or None."""
    state = rec["state"]
    running = state in RUNNING_LIKE and rec["pid"] is not None
    if action == "kill":
        return None if begin_termination(ctx, rec, "cancel") else "Job/step already completing or completed"
    if action in ("node_fail", "oom", "timeout", "preempt", "boot_fail"):
        if action == "boot_fail" and state == "PENDING":
            return None if begin_termination(ctx, rec, action) else "not applicable"
        return None if running and begin_termination(ctx, rec, action) else "Job is not running"
    if action == "vanish":
        if running:
            begin_termination(ctx, rec, "vanish")
        else:
            ctx.tasks.pop(rec["key"], None)
        return None
    if action == "requeue":
        if running:
            return None if begin_termination(ctx, rec, "requeue") else "Job is already completing"
        if state in ("PENDING", "ERROR"):
            return "Job is pending execution"
        requeue_now(ctx, rec)
        return None
    if action == "hold":
        return None if hold(ctx, rec, "admin" if ctx.cfg["uid"] == 0 else "user") else "Job has already finished"
    if action == "release":  # releasing a job that is not held is a no-op, not an error
        return "Job has already finished" if state not in ACTIVE else (release(ctx, rec) and None)
    if action == "eqw":
        if ctx.flavor != "sge":
            return "eqw exists only in the sge flavor"
        if running:
            return None if begin_termination(ctx, rec, "eqw") else "Job is already completing"
        if state == "PENDING":
            to_error(ctx, rec, "error: job set to error state by fault injection")
            return None
        return "Job has already finished"
    if action in ("suspend", "resume"):
        want, new = ("RUNNING", "SUSPENDED") if action == "suspend" else ("SUSPENDED", "RUNNING")
        if state != want or rec["kill"]:
            return f"Job is not {want.lower()}"
        rec["state"] = new
        rec["signals"].append(int(signal.SIGSTOP if action == "suspend" else signal.SIGCONT))
        return None
    raise ValueError(f"unknown action {action!r}; expected one of {FAULT_ACTIONS}")


def public_view(ctx: Ctx, rec: Record) -> dict[str, Any]:
    """A record merged with its submission's main fields, as returned by FakeCluster.jobs()."""
    job = ctx.job(rec)
    view = dict(rec)
    view.update(id=rec["key"], name=job["name"], user=job["user"], uid=job["uid"],
                cpus=job["cpus"], mem_mb=job.get("mem_mb"), time_limit=job.get("time_limit"),
                argv=job["argv"], command=job.get("command") or job["argv"][0],
                workdir=job["workdir"], partition=job.get("partition"),
                account=job.get("account"), qos=job.get("qos"), array=job["array"],
                throttle=job.get("throttle"), requeue=job.get("requeue"))
    view["exit_code"], view["signal"] = rec["exit"] if rec["exit"] else (None, None)
    return view
