"""`FakeCluster`: start/stop the fake daemon, generate the CLIs, inject faults, inspect jobs."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .launcher import _start_ticks
from . import model
from .model import Ctx
from .store import (StatePaths, locked, read_json, read_jsonl, read_state, transaction,
                    write_json_atomic, now)

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
SLURM_BIN = ("sbatch", "squeue", "scancel", "scontrol", "sacct")
SGE_BIN = ("qsub", "qstat", "qdel", "qconf", "qacct", "qhold", "qrls", "qmod", "qalter")
PBS_BIN = ("qsub", "qstat", "qdel", "qalter", "qselect")
LSF_BIN = ("bsub", "bjobs", "bkill", "bmod", "bparams", "lsid")
BINS = {"slurm": SLURM_BIN, "sge": SGE_BIN, "pbs": PBS_BIN, "lsf": LSF_BIN}
IDLE_STATES = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING"}


class FakeCluster:
    """A fake SLURM or SGE cluster living in `state_dir`; use as a context manager.

    slots: CPUs/slots of the single node `node`; max_array_size: SLURM MaxArraySize and SGE
    max_aj_tasks; min_job_age: seconds finished records stay visible to squeue/scontrol;
    tick: daemon period; kill_wait: SIGTERM→SIGKILL grace; requeue_delay: BeginTime after a
    requeue (SGE: time in `Rq`); job_requeue: SLURM JobRequeue default for jobs without
    --requeue/--no-requeue; max_aj_instances: SGE per-array concurrency cap; transfer_delay:
    seconds an SGE task shows `t` after starting; first_job_id: first id handed out;
    stop_with_owner: the daemon stops itself when the creating process dies.
    """

    def __init__(self, state_dir: str | os.PathLike[str], flavor: str = "slurm", slots: int = 8,
                 max_array_size: int = 1001, min_job_age: float = 300.0, tick: float = 0.05,
                 kill_wait: float = 1.0, requeue_delay: float = 0.5, job_requeue: bool = False,
                 max_aj_instances: int = 2000, transfer_delay: float = 0.0, first_job_id: int = 1,
                 node: str = "vm", stop_with_owner: bool = True, version: str | None = None) -> None:
        if flavor not in BINS:
            raise ValueError(f"flavor must be one of {sorted(BINS)}, not {flavor!r}")
        self.paths = StatePaths(Path(state_dir).resolve())
        self.flavor = flavor
        self.config: dict[str, Any] = {
            "flavor": flavor, "slots": int(slots), "max_array_size": int(max_array_size),
            "max_job_count": 10000, "min_job_age": float(min_job_age), "tick": float(tick),
            "kill_wait": float(kill_wait), "requeue_delay": float(requeue_delay),
            "job_requeue": bool(job_requeue), "max_aj_instances": int(max_aj_instances),
            "transfer_delay": float(transfer_delay), "version": version,
            "node": node, "cluster": "poolparty", "partition": "debug", "queue": "all.q",
            "uid": os.geteuid(), "user": pwd.getpwuid(os.geteuid()).pw_name,
        }
        self.first_job_id = first_job_id
        self.stop_with_owner = stop_with_owner
        self.daemon: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def state_dir(self) -> Path:
        return self.paths.root

    @property
    def bin_dir(self) -> Path:
        return self.paths.bin

    def start(self, timeout: float = 10.0) -> "FakeCluster":
        """Create the state, write the CLIs, start the daemon and wait until it ticks."""
        root = self.paths.root
        root.mkdir(parents=True, exist_ok=True)
        for stale in (self.paths.state, self.paths.controls, self.paths.daemon_info,
                      self.paths.calls, self.paths.archive, self.paths.accounting):
            stale.unlink(missing_ok=True)
        self.paths.spool.mkdir(exist_ok=True)
        with locked(self.paths):
            write_json_atomic(self.paths.state, {
                "config": self.config, "next_id": self.first_job_id, "jobs": {}, "tasks": {},
                "rules": [], "start_count": 0, "finished_jobs": {},
            })
            write_json_atomic(self.paths.controls, {"failures": {}, "delay": {}, "lost_reply": {}})
        write_json_atomic(root / "config.json", self.config)
        self._write_bin()
        code = (f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
                "from fake_wlm.daemon import main; sys.exit(main(sys.argv[1:]))")
        argv = [sys.executable, "-I", "-S", "-c", code, str(root)]
        if self.stop_with_owner:
            argv += ["--owner-pid", str(os.getpid())]
        with open(self.paths.daemon_log, "ab") as log:
            self.daemon = subprocess.Popen(argv, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while read_json(self.paths.daemon_info, {}).get("pid") != self.daemon.pid:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                log_text = self.paths.daemon_log.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"fake_wlm daemon did not start:\n{log_text}")
            time.sleep(0.02)
        return self

    def _write_bin(self) -> None:
        self.paths.bin.mkdir(exist_ok=True)
        for name in {n for names in BINS.values() for n in names}:
            (self.paths.bin / name).unlink(missing_ok=True)
        for name in BINS[self.flavor]:
            script = self.paths.bin / name
            script.write_text(
                f"#!{sys.executable} -IS\n"
                "import sys\n"
                f"sys.path.insert(0, {PACKAGE_PARENT!r})\n"
                "from fake_wlm.cli import main\n"
                f"sys.exit(main({name!r}, {str(self.paths.root)!r}))\n", encoding="utf-8")
            script.chmod(0o755)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the daemon (it kills all jobs: SIGTERM, SIGKILL after kill_wait)."""
        proc, self.daemon = self.daemon, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout or self.config["kill_wait"] + 10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:  # safety net if the daemon died without cleaning up
            for rec in read_state(self.paths).get("tasks", {}).values():
                # only the very process the daemon started: pids are recycled
                if rec.get("pid") and rec["state"] in model.RUNNING_LIKE \
                        and rec.get("start_ticks") is not None and _start_ticks(rec["pid"]) == rec["start_ticks"]:
                    try:
                        os.killpg(rec["pid"], signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "FakeCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def daemon_pid(self) -> int | None:
        return self.daemon.pid if self.daemon else None

    # ------------------------------------------------------------ helpers for tests
    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Copy of `base` (default os.environ) with bin_dir first on PATH."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *argv: str, cwd: str | os.PathLike[str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run one fake CLI command (`cluster.run("squeue", "-h")`) and capture its output."""
        return subprocess.run([str(self.bin_dir / argv[0]), *argv[1:]], env=self.env(), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    def inject(self, job_id: str | int, action: str) -> int:
        """Apply a fault/admin action now to the element(s) `job_id`; returns how many."""
        if action not in model.FAULT_ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {model.FAULT_ACTIONS}")
        if action == "eqw" and self.flavor != "sge":
            raise ValueError("the eqw action exists only in the sge flavor")
        with transaction(self.paths) as state:
            ctx = Ctx(self.paths, state, now())
            recs = self._resolve(state, str(job_id))
            errors = [model.apply_action(ctx, rec, action) for rec in recs]
        applied = sum(error is None for error in errors)
        if not applied:
            raise ValueError(f"{action} not applicable to {job_id}: {sorted(set(map(str, errors)))}")
        return applied

    @staticmethod
    def _resolve(state: dict[str, Any], job_id: str) -> list[dict[str, Any]]:
        tasks = state["tasks"]
        if job_id in tasks:
            return [tasks[job_id]]
        job_id = job_id.split("[]")[0].split(".")[0]  # PBS "12[].server" and "12.server": the whole job
        if job_id.isdigit():
            recs = [r for r in tasks.values() if r["job_id"] == int(job_id)] or \
                   [r for r in tasks.values() if r["raw_id"] == int(job_id)]
            if recs:
                return recs
        raise KeyError(f"no job element {job_id!r}")

    def add_rule(self, action: str, index: int | None = None, nth_start: int | None = None,
                 probability: float | None = None, seed: int | None = None, after: float = 0.0,
                 times: int = 1, name: str | None = None, job: str | int | None = None) -> int:
        """Arm `action` `after` s after a matching element starts; returns the rule id."""
        if action not in model.FAULT_ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {model.FAULT_ACTIONS}")
        with transaction(self.paths) as state:
            rule_id = len(state["rules"]) + 1
            state["rules"].append({"id": rule_id, "action": action, "index": index,
                                   "nth_start": nth_start, "probability": probability,
                                   "seed": seed, "after": float(after), "times": int(times),
                                   "name": name, "job": job, "armed": 0})
        return rule_id

    def rules(self) -> list[dict[str, Any]]:
        """Current rules with their remaining `times` and `armed` counts."""
        return read_state(self.paths)["rules"]

    def set_cli_failures(self, lost_reply: bool = False, **counts: int) -> None:
        """The next N calls of each named command fail like a controller timeout (rc 1).

        With lost_reply=True the command still takes effect and only its answer is lost."""
        self._check_commands(counts)
        with locked(self.paths):
            controls = read_json(self.paths.controls, {})
            for cmd, count in counts.items():
                controls["failures"][cmd] = int(count)
                controls["lost_reply"][cmd] = bool(lost_reply)
            write_json_atomic(self.paths.controls, controls)

    def set_cli_delay(self, **delays: float) -> None:
        """Each call of the named commands sleeps this many seconds first (0 removes)."""
        self._check_commands(delays)
        with locked(self.paths):
            controls = read_json(self.paths.controls, {})
            controls["delay"].update({cmd: float(sec) for cmd, sec in delays.items()})
            write_json_atomic(self.paths.controls, controls)

    def _check_commands(self, names: dict[str, Any]) -> None:
        valid = BINS[self.flavor]
        unknown = set(names) - set(valid)
        if unknown:
            raise ValueError(f"unknown {self.flavor} commands: {sorted(unknown)}")

    def calls(self, cmd: str | None = None) -> list[dict[str, Any]]:
        """Logged CLI calls (`t`, `cmd`, `argv`, `rc`, `dur`), optionally of one command."""
        return [c for c in read_jsonl(self.paths.calls) if cmd is None or c["cmd"] == cmd]

    def jobs(self) -> list[dict[str, Any]]:
        """Current element records, including finished ones within min_job_age."""
        state = read_state(self.paths)
        ctx = Ctx(self.paths, state, now())
        return [model.public_view(ctx, rec) for rec in state["tasks"].values()]

    def job(self, job_id: str | int) -> dict[str, Any] | None:
        """One element by its printed id (`12`, `12_3`, `12.3`), or None."""
        return next((j for j in self.jobs() if j["id"] == str(job_id)), None)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0,
                 poll: float = 0.05) -> list[dict[str, Any]]:
        """Poll jobs() until `predicate(jobs)` is true; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs()
            if predicate(jobs):
                return jobs
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; jobs={jobs}")
            time.sleep(poll)

    def wait_state(self, job_id: str | int, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until element `job_id` is in one of `states` (internal names, e.g. TIMEOUT)."""
        jobs = self.wait_for(lambda js: any(j["id"] == str(job_id) and j["state"] in states
                                            for j in js), timeout)
        return next(j for j in jobs if j["id"] == str(job_id))

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no element is pending, running, suspended or completing."""
        self.wait_for(lambda js: not any(j["state"] in IDLE_STATES for j in js), timeout)

    def remove(self) -> None:
        """Stop and delete the whole state directory."""
        self.stop()
        shutil.rmtree(self.paths.root, ignore_errors=True)

