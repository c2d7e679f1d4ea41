"""The fake scheduler daemon: `python -m fake_wlm.daemon STATE_DIR [--owner-pid PID]`.

Every `tick` seconds it takes the state lock and: reaps finished jobs, delivers kill requests and
signals, enforces time and memory limits, fires armed fault rules, starts pending elements when
slots are free, and expires finished records after `min_job_age`.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from . import model
from .launcher import launch
from .model import RUNNING_LIKE, Ctx, Record
from .store import StatePaths, append_jsonl, load_state, locked, now, save_state, write_json_atomic

MEMORY_CHECK_INTERVAL = 0.1
OWNER_CHECK_INTERVAL = 1.0


class Daemon:
    """Owns the job processes; every state change by others goes through state.json."""

    def __init__(self, state_dir: str, owner_pid: int | None) -> None:
        self.paths = StatePaths(state_dir)
        self.owner_pid = owner_pid
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cached_state: dict[str, Any] | None = None
        self.cached_stat: tuple[int, int, int] | None = None
        self.stopping = False
        self.last_memory_check = 0.0
        self.last_owner_check = 0.0
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.reschedule_at = 0.0  # skip the (O(pending)) scheduling pass until then

    # ----------------------------------------------------------------- main loop
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with locked(self.paths):
            tick = float(load_state(self.paths)["config"]["tick"])
        write_json_atomic(self.paths.daemon_info, {"pid": os.getpid(), "ready_t": now()})
        while not self.stopping:
            started = time.monotonic()
            self.tick()
            self._check_owner()
            time.sleep(max(0.0, tick - (time.monotonic() - started)))
        self.shutdown()

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _check_owner(self) -> None:
        if not self.owner_pid or time.monotonic() - self.last_owner_check < OWNER_CHECK_INTERVAL:
            return
        self.last_owner_check = time.monotonic()
        try:
            with open(f"/proc/{self.owner_pid}/stat", "rb") as fh:
                owner_state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            owner_state = b"X"
        if owner_state in (b"Z", b"X"):  # the process that created the cluster is gone
            self.stopping = True

    def _load(self) -> dict[str, Any]:
        st = os.stat(self.paths.state)
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig != self.cached_stat or self.cached_state is None:
            self.cached_state = load_state(self.paths)
            self.cached_stat = sig
            self.reschedule_at = 0.0  # someone else changed the state: look again
        return self.cached_state

    def tick(self) -> None:
        with locked(self.paths):
            state = self._load()
            ctx = Ctx(self.paths, state, now())
            if self.step(ctx):
                st = save_state(self.paths, state)
                self.cached_stat = (st.st_ino, st.st_mtime_ns, st.st_size)

    # ----------------------------------------------------------------- one tick
    def step(self, ctx: Ctx) -> bool:
        dirty = self._reap(ctx)
        dirty |= self._supervise(ctx)
        if dirty or ctx.now >= self.reschedule_at:
            dirty |= self._schedule(ctx)
        dirty |= self._expire(ctx)
        return dirty

    def _reap(self, ctx: Ctx) -> bool:
        dirty = False
        for key, proc in list(self.procs.items()):
            try:  # has it exited? (WNOWAIT: the zombie keeps its pid and group until reaped below)
                exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                exited = True
            if not exited:
                continue
            # leftovers of the job, like proctrack/cgroup; before reaping, so the group id cannot have
            # been recycled (pid_max may be as low as 32768)
            _killpg(proc.pid, signal.SIGKILL)
            returncode = proc.poll()
            del self.procs[key]
            rec = ctx.tasks.get(key)
            if rec is None or rec["pid"] != proc.pid:
                continue
            if rec["kill"]:
                model.finish_killed(ctx, rec)
            else:
                model.finish_exited(ctx, rec, returncode)
            dirty = True
        return dirty

    def _supervise(self, ctx: Ctx) -> bool:
        dirty = False
        check_memory = ctx.now - self.last_memory_check >= MEMORY_CHECK_INTERVAL
        if check_memory:
            self.last_memory_check = ctx.now
        for rec in list(ctx.tasks.values()):
            pid = rec["pid"]
            if pid is None or rec["state"] not in RUNNING_LIKE or rec["key"] not in self.procs:
                continue
            dirty |= self._deliver(ctx, rec, pid)
            if rec["state"] != "RUNNING" or rec["kill"]:
                continue
            job = ctx.job(rec)
            limit = job.get("time_limit")
            if limit and ctx.now - rec["start_t"] >= limit:
                dirty |= model.begin_termination(ctx, rec, "timeout")
                continue
            dirty |= self._fire_armed(ctx, rec, pid)
            mem_mb = job.get("mem_mb")
            if check_memory and mem_mb and rec["state"] == "RUNNING" and not rec["kill"]:
                if self._tree_rss(pid) > mem_mb * 1024 * 1024:
                    dirty |= model.begin_termination(ctx, rec, "oom")
        return dirty

    def _deliver(self, ctx: Ctx, rec: Record, pid: int) -> bool:
        dirty = False
        for sig in rec["signals"]:
            _killpg(pid, sig)
            dirty = True
        rec["signals"] = [] if dirty else rec["signals"]
        kill = rec["kill"]
        if kill and kill["sent_t"] is None:
            _killpg(pid, signal.SIGCONT)
            _killpg(pid, kill["sig"])
            kill["sent_t"] = ctx.now
            dirty = True
        elif kill and kill["sig"] != signal.SIGKILL and ctx.now - kill["sent_t"] >= ctx.cfg["kill_wait"]:
            _killpg(pid, signal.SIGKILL)
            kill["sig"] = int(signal.SIGKILL)
            dirty = True
        return dirty

    def _fire_armed(self, ctx: Ctx, rec: Record, pid: int) -> bool:
        due = [a for a in rec["armed"] if a["at"] <= ctx.now]
        if not due:
            return False
        rec["armed"] = [a for a in rec["armed"] if a["at"] > ctx.now]
        for armed in due:
            if armed["attempt"] != rec["restarts"] or rec["key"] not in ctx.tasks:
                continue
            if armed["action"] == "signal":
                (os.kill if armed["batch_only"] else _killpg)(pid, armed["sig"])
            else:
                model.apply_action(ctx, rec, armed["action"])
        return True

    def _tree_rss(self, pid: int) -> int:
        total, stack, seen = 0, [pid], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            try:
                with open(f"/proc/{current}/statm", "rb") as fh:
                    total += int(fh.read().split()[1]) * self.page_size
                with open(f"/proc/{current}/task/{current}/children", "rb") as fh:
                    stack.extend(int(child) for child in fh.read().split())
            except (OSError, ValueError, IndexError):
                continue
        return total

    def _schedule(self, ctx: Ctx) -> bool:
        cfg = ctx.cfg
        used = 0
        running_per_job: Counter[int] = Counter()
        pending: list[Record] = []
        for rec in ctx.tasks.values():
            if rec["state"] in RUNNING_LIKE and rec["pid"]:
                used += ctx.job(rec)["cpus"]
                running_per_job[rec["job_id"]] += 1
            elif rec["state"] == "PENDING":
                pending.append(rec)
        # nothing changes for pending jobs until a process ends, the state is edited, or a
        # BeginTime passes; re-check at least every second anyway
        waits = [r["eligible_t"] for r in pending if r["eligible_t"] > ctx.now]
        self.reschedule_at = min([ctx.now + 1.0, *waits])
        if not pending:
            return False
        free = cfg["slots"] - used
        dirty = False
        blocked = False
        pending.sort(key=lambda r: (r["job_id"], r["task_id"] if r["task_id"] is not None else -1))
        for rec in pending:
            if rec["key"] not in ctx.tasks or rec["state"] != "PENDING":
                continue
            job = ctx.job(rec)
            reason = self._blocker(ctx, rec, job, running_per_job, free, blocked)
            if reason == "Resources":
                blocked = True
            if reason is None:
                proc = launch(ctx, rec)
                dirty = True
                if proc is not None:
                    self.procs[rec["key"]] = proc
                    free -= job["cpus"]
                    running_per_job[rec["job_id"]] += 1
                continue
            if reason != rec["reason"]:
                rec["reason"] = reason
                dirty = True
        return dirty

    def _blocker(self, ctx: Ctx, rec: Record, job: dict[str, Any], running_per_job: Counter[int],
                 free: int, blocked: bool) -> str | None:
        """Why `rec` cannot start now (SLURM reason name), or None."""
        if rec["hold"]:
            return "JobHeldAdmin" if rec["hold"] == "admin" else "JobHeldUser"
        if rec["eligible_t"] > ctx.now:
            return "BeginTime"
        if job.get("hold_jids") and _predecessors_active(ctx, job):
            return "Dependency"
        throttle = job.get("throttle")
        if ctx.flavor == "sge":
            limit = ctx.cfg["max_aj_instances"]
            throttle = min(throttle, limit) if throttle else limit
        if throttle and job["array"] and running_per_job[rec["job_id"]] >= throttle:
            return "JobArrayTaskLimit"
        if job["cpus"] > free:
            return "Priority" if blocked else "Resources"
        return None

    def _expire(self, ctx: Ctx) -> bool:
        age = ctx.cfg["min_job_age"]
        gone = [rec for rec in ctx.tasks.values() if rec["state"] not in model.ACTIVE
                and rec["end_t"] is not None and ctx.now - rec["end_t"] >= age]
        for rec in gone:
            if ctx.flavor == "slurm":
                append_jsonl(self.paths.archive, model.public_view(ctx, rec))
            del ctx.tasks[rec["key"]]
        live_jobs = {str(rec["job_id"]) for rec in ctx.tasks.values()}
        for job_id in [j for j in ctx.state["jobs"] if j not in live_jobs]:
            ctx.state["finished_jobs"][job_id] = ctx.state["jobs"].pop(job_id)["name"]
        return bool(gone)

    # ----------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Kill every job process group: SIGTERM, then SIGKILL after kill_wait."""
        with locked(self.paths):
            state = load_state(self.paths)
            kill_wait = float(state["config"]["kill_wait"])
        for proc in self.procs.values():
            _killpg(proc.pid, signal.SIGCONT)
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + kill_wait
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            time.sleep(0.02)
        for proc in self.procs.values():
            _killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        with locked(self.paths):
            state = load_state(self.paths)
            ctx = Ctx(self.paths, state, now())
            for key in self.procs:
                rec = ctx.tasks.get(key)
                if rec is not None and rec["pid"]:
                    rec.setdefault("kill", None)
                    rec["kill"] = rec["kill"] or {"action": "cancel", "sig": 9, "sent_t": ctx.now}
                    model.finish_killed(ctx, rec)
            state["daemon_stopped_t"] = ctx.now
            save_state(self.paths, state)


def _predecessors_active(ctx: Ctx, job: dict[str, Any]) -> bool:
    wanted = set(job["hold_jids"])
    for rec in ctx.tasks.values():
        if rec["state"] in model.ACTIVE and rec["job_id"] != job["job_id"]:
            other = ctx.job(rec)
            if str(rec["job_id"]) in wanted or other["name"] in wanted:
                return True
    return False


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_wlm.daemon")
    parser.add_argument("state_dir")
    parser.add_argument("--owner-pid", type=int, default=None)
    args = parser.parse_args(argv)
    Daemon(args.state_dir, args.owner_pid).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
