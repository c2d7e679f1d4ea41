#!/usr/bin/env python
"""poolparty against its peers on the real test cluster (the one ``ci/start-slurm.sh`` and
``ci/start-sge.sh`` bring up; this script brings nothing up and changes no configuration).

    /work/bench-venv/bin/python benchmarks/bench_cluster.py            # full run, < 15 min
    /work/bench-venv/bin/python benchmarks/bench_cluster.py --quick    # smoke run, < 3 min

Writes ``benchmarks/results/cluster.{md,png,json}`` (``cluster-quick.*`` with --quick) and prints a
short summary. Needs a venv with poolparty (this checkout, editable), submitit, dask-jobqueue,
pypoolparty and matplotlib: see benchmarks/README.md.

Systems (SLURM): poolparty ``Pool(queue="slurm")``, pypoolparty ``slurm.array.Pool``, submitit
``map_array``, dask-jobqueue ``SLURMCluster`` + ``adapt`` + ``client.map``, and the floor: a hand-written
``sbatch --array`` job over the same chunks. SGE: poolparty ``Pool(queue="sge")``, pypoolparty's SGE pool
and a ``qsub -t`` floor. Every system runs the same chunks (poolparty's default chunking at
``--max-running`` 16: ceil(N / 64) tasks per chunk).

Workloads: (1) many small tasks, (2) few long tasks, (3) a faulty cluster where ``cluster_faults.py``
cancels 5% of the running array elements. For each case the systems run in turn, rotating the order
every repetition (A B C, B C A, ...); each run is a fresh interpreter behind a PATH shim that counts
scheduler calls; files are counted under the system's own directory (peak sampled every 0.2 s, and at
the end); allocated core-seconds come from ``sacct`` (SGE: the accounting file).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sacct_time import slurm_seconds

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SGE_ACCOUNTING = Path("/var/lib/gridengine/default/common/accounting")

COMMANDS = {
    "slurm": ("sbatch", "squeue", "sacct", "scancel", "scontrol", "srun", "sinfo"),
    "sge": ("qsub", "qstat", "qdel", "qconf", "qacct", "qalter"),
}
SUBMIT = {"slurm": "sbatch", "sge": "qsub"}
STATUS = {"slurm": ("squeue", "sacct"), "sge": ("qstat", "qacct")}
SLURM_SYSTEMS = ["poolparty", "floor", "pypoolparty", "submitit", "dask-jobqueue"]
SGE_SYSTEMS = ["poolparty", "floor", "pypoolparty"]
SHORT = {"poolparty": "pp", "floor": "floor", "pypoolparty": "ppp", "submitit": "subm", "dask-jobqueue": "dask",
         "floor+imports": "floorimp", "floor+lean": "floorlean"}
CLOSE_CALL = 1.25  # a peer whose first run's overhead (wall above the ideal) is at most this much more than
#                   poolparty's is run --reps times
SLURM_ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED"}

SHIM = """#!/bin/sh
# ppbench call counter: one line per call (one write), then the real command
line={cmd}
for a in "$@"; do line="$line $a"; done
printf '%s\\n' "$line" >> {log}
exec {real} "$@"
"""


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Case:
    key: str
    workload: str  # small | long | faulty
    queue: str  # slurm | sge
    n: int
    seconds: float
    systems: list[str]
    reps: int
    reps_by_system: dict[str, int] = field(default_factory=dict)
    faults: bool = False
    skip_after_failure: bool = False  # workload 3: a system that failed or hung is not run again
    close_calls: bool = False  # a peer within CLOSE_CALL of poolparty's first run (overheads) gets ``reps`` runs too
    repeated: list[str] = field(default_factory=list)  # the peers that did

    def reps_for(self, system: str) -> int:
        return self.reps_by_system.get(system, self.reps)


def chunksize_for(n: int, max_running: int) -> int:
    """poolparty's (and multiprocessing's) default: four chunks per worker."""
    return max(1, math.ceil(n / (max_running * 4)))


def ideal_seconds(case: "Case", row: dict, max_running: int) -> float:
    """The least time the slots must be held: waves of chunks (``max_running`` at once) x one chunk's
    duration. What every system adds on top of it is what a close call compares: in workload 2, 15 s of
    the ~20 s every system takes is the tasks themselves, so comparing whole walls calls every peer close."""
    waves = math.ceil(row["chunks"] / max_running)
    return waves * row["chunksize"] * case.seconds


def make_plan(a: argparse.Namespace) -> list[Case]:
    """The cases, in order. Repetitions: ``--reps`` (3) for poolparty and the floor (the ratio targets),
    ``--peer-reps`` for the peers (1 by default, to fit 15 minutes; ``--complete`` gives them ``--reps``)."""
    def pick(names: list[str]) -> list[str]:
        return [s for s in names if not a.systems or s in a.systems]

    reps = a.reps or (1 if a.quick else 3)
    peer_reps = reps if a.complete else (a.peer_reps or 1)

    def by_system(systems: list[str], main: int = reps, peers: int = peer_reps) -> dict[str, int]:
        return {s: (main if s in ("poolparty", "floor") else peers) for s in systems}

    t_small, t_long, t_faulty = a.task_ms / 1000, 5.0, 0.05
    cases: list[Case] = []
    if a.profile:  # where poolparty's time goes: the floor with poolparty's worker imports added
        systems = pick(["poolparty", "floor", "floor+imports", "floor+lean"])
        for n in a.ns or [1000, 10_000]:
            cases.append(Case(f"profile-slurm-{n}", "profile", "slurm", n, t_small, systems, reps))
        return cases
    ns = a.ns or ([1000] if a.quick else [100, 1000, 10_000, 50_000])
    slurm, sge = pick(SLURM_SYSTEMS), pick(SGE_SYSTEMS)
    if "slurm" in a.queues:
        if "small" in a.workloads:
            for n in ns:
                # 50,000 tasks hold the 16 slots for 31 s per run: the peers (whose chunks are the same 64 as at
                # 10,000, only longer) run there only with --complete or --big-peers, to stay within 15 minutes
                systems = slurm if n < 50_000 or a.complete or a.big_peers else \
                    [s for s in slurm if s in ("poolparty", "floor")]
                small_reps = by_system(systems)
                if n < 1000 and "floor" in small_reps and not a.complete:
                    small_reps["floor"] = 1  # the floor-ratio target is for N >= 1,000: a reference run here
                cases.append(Case(f"small-slurm-{n}", "small", "slurm", n, t_small, systems, reps, small_reps,
                                  close_calls=not a.quick))
        # --quick: workloads 2 and 3 for poolparty and the floor only
        short = [s for s in slurm if s in ("poolparty", "floor")] if a.quick else slurm
        if "long" in a.workloads:
            # no floor-ratio target here: the floor runs once for reference (--complete: --reps times)
            long_reps = by_system(short)
            if "floor" in long_reps and not a.complete:
                long_reps["floor"] = 1
            cases.append(Case("long-slurm-40", "long", "slurm", 40, t_long, short, reps, long_reps,
                              close_calls=not a.quick))
        if "faulty" in a.workloads:
            cases.append(Case("faulty-slurm-2000", "faulty", "slurm", 2000, t_faulty, short, reps,
                              by_system(short), faults=True, skip_after_failure=True))
    if "sge" in a.queues and "small" in a.workloads and not a.quick:
        # SGE: one size, one run per system by default (--complete: --reps runs)
        sge_reps = reps if a.complete else 1
        for n in [x for x in ns if x == 1000] or ([1000] if not a.ns else []):
            cases.append(Case(f"small-sge-{n}", "small", "sge", n, t_small, sge, sge_reps,
                              by_system(sge, sge_reps, sge_reps)))
    return cases


# -- the cluster, seen from outside ------------------------------------------------------------------
class Cluster:
    """Real scheduler commands (absolute paths, never the shim): probes, cleanup, accounting."""

    def __init__(self, queues: list[str]):
        self.real: dict[str, str] = {}
        for q in queues:
            for cmd in COMMANDS[q]:
                path = shutil.which(cmd)
                if path:
                    self.real[cmd] = path

    def run(self, argv: list[str], timeout: float = 30) -> str:
        argv = [self.real.get(argv[0], argv[0]), *argv[1:]]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
        except subprocess.TimeoutExpired:
            return ""

    def available(self, queue: str) -> str | None:
        if queue == "slurm":
            if "sbatch" not in self.real:
                return "sbatch not on PATH"
            out = self.run(["sinfo", "--noheader", "--format=%T"])
            return None if out.strip() else "sinfo shows no node (start it with: sudo ci/start-slurm.sh)"
        if "qsub" not in self.real:
            return "qsub not on PATH"
        out = self.run(["qstat", "-f"])
        return None if "all.q" in out else "qstat -f shows no queue (start it with: sudo ci/start-sge.sh)"

    def jobs(self, queue: str) -> list[tuple[str, str, bool, float]]:
        """Every job in the queue (all users): (name, element id, active, seconds since submission)."""
        now = time.time()
        if queue == "slurm":
            out = self.run(["squeue", "--noheader", "--array", "--all", "--format=%j|%i|%T|%V"])
            jobs = []
            for line in out.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 4:
                    jobs.append((parts[0], parts[1], parts[2] in SLURM_ACTIVE, now - _epoch(parts[3], now)))
            return jobs
        out = self.run(["qstat", "-u", "*", "-xml"])
        try:
            root = ET.fromstring(out)
        except ET.ParseError:
            return []
        jobs = []
        for j in root.iter("job_list"):
            state = j.findtext("state", "")
            element = j.findtext("JB_job_number", "") + "." + (j.findtext("tasks") or "")
            submitted = j.findtext("JB_submission_time") or j.findtext("JAT_start_time") or ""
            jobs.append((j.findtext("JB_name", ""), element, not ("h" in state or "E" in state),
                         now - _epoch(submitted, now)))
        return jobs

    def cancel(self, queue: str, names: set[str]) -> None:
        names = names & {j[0] for j in self.jobs(queue)}  # only names that still have jobs
        for name in sorted(names):  # by exact name: only this run's jobs
            if queue == "slurm":
                self.run(["scancel", f"--name={name}"])
            else:
                self.run(["qdel", name])

    def max_array_size(self) -> str:
        for line in self.run(["scontrol", "show", "config"]).splitlines():
            if line.startswith("MaxArraySize"):
                return line.split("=", 1)[1].strip()
        return "?"

    def accounting(self, queue: str, names: set[str], since: float, expected: int = 0) -> dict:
        """Allocated core-seconds and the jobs' CPU time, for the jobs of these names since ``since``.
        slurmdbd lags behind slurmctld (seconds, under load): read until at least ``expected`` elements
        are there and two reads a second apart agree."""
        if not names:
            return {"elements": 0, "alloc_core_s": 0.0, "cpu_s": 0.0}
        if queue == "sge":
            return self._sge_accounting(names, since)
        start = datetime.datetime.fromtimestamp(since - 2).strftime("%Y-%m-%dT%H:%M:%S")
        deadline = time.monotonic() + 60
        previous = None
        while True:
            out = self.run(["sacct", "--noheader", "--parsable2", "--allusers", f"--name={','.join(sorted(names))}",
                            f"--starttime={start}", "--format=JobID,AllocCPUS,ElapsedRaw,TotalCPU,State"])
            alloc = cpu_steps = cpu_jobs = 0.0
            elements = unfinished = 0
            for line in out.splitlines():
                parts = line.split("|")
                if len(parts) != 5:
                    continue
                job, ncpu, elapsed, total, state = parts
                if "." in job:
                    cpu_steps += slurm_seconds(total)
                    continue
                elements += 1
                alloc += int(ncpu or 0) * int(elapsed or 0)
                cpu_jobs += slurm_seconds(total)
                if state.split()[0] in SLURM_ACTIVE or "[" in job:
                    unfinished += 1
            now = {"elements": elements, "alloc_core_s": alloc, "cpu_s": max(cpu_steps, cpu_jobs),
                   "unfinished_in_sacct": unfinished, "expected_elements": expected}
            if (elements >= max(expected, 1) and not unfinished and now == previous) or time.monotonic() > deadline:
                return now
            previous = now
            time.sleep(1)

    def _sge_accounting(self, names: set[str], since: float) -> dict:
        time.sleep(2)  # SGE_TUNE flushes accounting every second
        alloc = cpu = 0.0
        elements = 0
        try:
            lines = SGE_ACCOUNTING.read_text(errors="replace").splitlines()
        except OSError:
            return {"elements": 0, "alloc_core_s": None, "cpu_s": None}
        for line in lines:
            f = line.split(":")
            if len(f) < 37 or f[4] not in names or float(f[8]) < since - 2:
                continue
            elements += 1
            alloc += int(f[34]) * float(f[13])
            cpu += float(f[36])
        return {"elements": elements, "alloc_core_s": alloc, "cpu_s": cpu}


def _epoch(text: str, default: float) -> float:
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return default


# -- one run -------------------------------------------------------------------------------------
def count_files(path: Path) -> int:
    n = 0
    for _, _, files in os.walk(path):
        n += len(files)
    return n


def names_from_calls(log: Path, queue: str) -> set[str]:
    """Job names a system chose itself, read from its logged sbatch/qsub argv."""
    names: set[str] = set()
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return names
    for line in lines:
        argv = line.split(" ")
        if argv[0] != SUBMIT[queue]:
            continue
        for i, arg in enumerate(argv):
            if arg.startswith("--job-name="):
                names.add(arg.split("=", 1)[1])
            elif arg in ("--job-name", "-J", "-N") and i + 1 < len(argv):
                names.add(argv[i + 1])
    return names


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _read_names(path: Path) -> set[str]:
    try:
        return {x.strip() for x in path.read_text().splitlines() if x.strip()}
    except FileNotFoundError:
        return set()


def expected_elements(log: Path, queue: str) -> int:
    """Array elements and plain jobs submitted with their size on the command line (a lower bound:
    submitit puts --array in its script, not on the command line)."""
    total = 0
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in lines:
        argv = line.split(" ")
        if argv[0] != SUBMIT[queue]:
            continue
        spec = next((x.split("=", 1)[1] for x in argv if x.startswith("--array=")), None)
        if spec is None and "--array" in argv:
            spec = argv[argv.index("--array") + 1]
        if spec is None and "-t" in argv:
            spec = argv[argv.index("-t") + 1]
        if spec is None:
            total += 1
            continue
        for part in spec.split("%")[0].split(","):
            lo, _, hi = part.partition("-")
            total += int(hi) - int(lo) + 1 if hi else 1
    return total


def count_calls(log: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    try:
        for line in log.read_text().splitlines():
            cmd = line.split(" ", 1)[0]
            calls[cmd] = calls.get(cmd, 0) + 1
    except FileNotFoundError:
        pass
    return calls


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.started = time.monotonic()
        self.stamp = time.strftime("%H%M%S")
        self.cluster = Cluster(a.queues)
        self.scratch = Path(tempfile.mkdtemp(prefix="ppbench-", dir=a.scratch))
        self.pycache = Path(tempfile.gettempdir()) / f"ppbench-pycache-{os.getuid()}"
        self.env = dict(os.environ)
        # Workers must not recompile their modules at every start: PYTHONDONTWRITEBYTECODE=1 (set in this
        # environment) with an editable install would make every poolparty chunk compile poolparty from
        # source. A pycache prefix outside the source tree gives every system compiled modules.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        for var in [v for v in self.env if v.startswith("POOLPARTY_")]:
            self.env.pop(var)
        self.env["PYTHONPATH"] = str(HERE) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.own_names: set[str] = set()
        self.rows: list[dict] = []
        self.accounting_threads: list[threading.Thread] = []
        self.stuck: set[tuple[str, str]] = set()
        self.quiet_budget = a.quiet_budget

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def warm_up(self) -> None:
        """Compile every module the drivers and the jobs import into the pycache prefix, once."""
        mods = ["poolparty", "poolparty.node.worker", "poolparty.api.pool", "cluster_tasks", "cluster_systems", "submitit",
                "submitit.core._submit", "pypoolparty", "dask_jobqueue", "distributed",
                "distributed.cli.dask_worker", "matplotlib.pyplot"]
        code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % mods
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, capture_output=True)

    def _ours(self, name: str, names: set[str]) -> bool:
        return name in names or name in self.own_names or name.startswith(f"ppbench-{self.stamp}-")

    def wait_quiet(self, queue: str) -> int:
        """Wait (up to --quiet-wait s) until no other user's job is queued: other engineers share this
        cluster. Jobs still there when a wait times out are taken as stuck (e.g. asking for more slots
        than exist) and not waited for again."""
        deadline = time.monotonic() + min(self.a.quiet_wait, max(0.0, self.quiet_budget))
        t0 = time.monotonic()
        try:
            while True:
                foreign = [j for j in self.cluster.jobs(queue) if j[2] and not self._ours(j[0], set())
                           and (queue, j[1]) not in self.stuck]
                # a foreign job queued for more than 10 minutes is not going to leave soon (e.g. it asks for
                # more slots than exist): counted, not waited for
                old = [j for j in foreign if j[3] > 600]
                self.stuck |= {(queue, j[1]) for j in old}
                foreign = [j for j in foreign if j not in old]
                if not foreign:
                    return len(old)
                if time.monotonic() >= deadline:
                    self.stuck |= {(queue, j[1]) for j in foreign}
                    self.log(f"{len(foreign)} job(s) of other users still queued: running anyway"
                             + ("" if self.quiet_budget > 0 else " (--quiet-budget spent)"))
                    return len(foreign)
                time.sleep(1)
        finally:
            self.quiet_budget -= time.monotonic() - t0

    def run_one(self, case: Case, system: str, rep: int) -> dict:
        a = self.a
        tag = f"{case.key}-{SHORT[system]}-{rep}"
        base = self.scratch / tag
        shared, control, shim = base / "shared", base / "control", base / "shim"
        for d in (shared, control, shim):
            d.mkdir(parents=True)
        # declared: job names the driver announces; names: what the fault injector reads (ours, replaced whole)
        calls_log, declared, names_file = control / "calls.log", control / "declared", control / "names"
        declared.touch()
        names_file.touch()
        for cmd in COMMANDS[case.queue]:
            if cmd in self.cluster.real:
                (shim / cmd).write_text(SHIM.format(cmd=cmd, log=calls_log, real=self.cluster.real[cmd]))
                (shim / cmd).chmod(0o755)
        env = dict(self.env, PATH=f"{shim}{os.pathsep}{self.env['PATH']}")
        name = f"ppbench-{self.stamp}-{SHORT[system]}-{case.key}-{rep}"
        chunksize = chunksize_for(case.n, a.max_running)
        spec = {"system": system, "queue": case.queue, "n": case.n, "seconds": case.seconds, "cpu": a.cpu,
                "chunksize": chunksize, "max_running": a.max_running, "dir": str(shared), "name": name,
                "names_file": str(declared), "local_dir": str(control)}
        t_quiet = time.monotonic()
        foreign = self.wait_quiet(case.queue)
        ideal = case.n * case.seconds / a.max_running
        limit = a.time_limit or (90 + 4 * ideal)
        injector = None
        if case.faults:
            injector = subprocess.Popen(
                [sys.executable, str(HERE / "cluster_faults.py"), "--names-file", str(names_file),
                 "--squeue", self.cluster.real["squeue"], "--scancel", self.cluster.real["scancel"],
                 "--log", str(control / "faults.log")], env=self.env, start_new_session=True)
        t_start = time.time()
        t0 = time.monotonic()
        stdout_f, stderr_f = open(control / "stdout", "w+"), open(control / "stderr", "w+")
        proc = subprocess.Popen([sys.executable, str(HERE / "cluster_systems.py"), json.dumps(spec)], cwd=shared,
                                env=env, stdout=stdout_f, stderr=stderr_f, start_new_session=True)
        peak, last_active, outcome, foreign_max = 0, t0, "finished", foreign
        names: set[str] = set()
        next_probe = 0.0
        hwm_kb = None  # the driver's peak RSS from /proc, for runs that have to be stopped
        self.live = [proc] + ([injector] if injector is not None else [])
        while proc.poll() is None:
            peak = max(peak, count_files(shared))
            hwm_kb = _vm_hwm(proc.pid) or hwm_kb
            now = time.monotonic()
            if now >= next_probe:  # every 2 s: the names this run uses, and whether any of its jobs lives
                next_probe = now + 2.0
                found = names_from_calls(calls_log, case.queue) | _read_names(declared)
                if found - names:
                    names |= found
                    self.own_names |= found
                    tmp = names_file.with_suffix(".tmp")
                    tmp.write_text("".join(x + "\n" for x in sorted(names)))
                    os.replace(tmp, names_file)
                jobs = self.cluster.jobs(case.queue)
                foreign_max = max(foreign_max, sum(1 for j in jobs if j[2] and not self._ours(j[0], names)))
                if any(j[2] and j[0] in names for j in jobs):
                    last_active = now
                elif now - last_active > a.hang_after:
                    outcome = f"hung: no job of its own in the queue for {a.hang_after:.0f} s, results incomplete"
                    break
            if now - t0 > limit:
                outcome = f"time limit {limit:.0f} s"
                break
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        elapsed = time.monotonic() - t0
        if injector is not None:
            injector.terminate()
            injector.wait()
        names |= names_from_calls(calls_log, case.queue) | _read_names(declared)
        self.own_names |= names
        peak = max(peak, count_files(shared))
        end_files = count_files(shared)
        t_after = time.monotonic()
        self.cluster.cancel(case.queue, names)  # whatever the system left behind (a hung pool's jobs)
        self._wait_gone(case.queue, names)
        t_gone = time.monotonic()
        phases = {"quiet_s": t0 - t_quiet, "process_s": elapsed, "cleanup_s": t_gone - t_after}
        stdout_f.seek(0)
        lines = [x for x in stdout_f.read().splitlines() if x.startswith("{")]
        stderr_f.seek(0)
        err_tail = stderr_f.read()[-1500:]
        result = json.loads(lines[-1]) if lines else {}
        if not result and outcome == "finished":
            outcome = f"driver died (exit {proc.returncode})"
        faults = []
        if case.faults and (control / "faults.log").exists():
            faults = [json.loads(x) for x in (control / "faults.log").read_text().splitlines()]
        calls = count_calls(calls_log)
        task_busy = case.n * case.seconds
        row = {
            "case": case.key, "workload": case.workload, "queue": case.queue, "n": case.n, "seconds": case.seconds,
            "chunksize": chunksize, "chunks": math.ceil(case.n / chunksize), "system": system, "rep": rep,
            "outcome": outcome if outcome != "finished" or result.get("error") is None else "error",
            "error": result.get("error"), "wall": result.get("wall"), "total": result.get("total"),
            "process_s": elapsed, "complete": bool(result.get("complete")), "correct": bool(result.get("correct")),
            "n_results": result.get("n_results", 0), "maxrss_kb": result.get("maxrss_kb") or hwm_kb,
            "version": result.get("version"), "stats": result.get("stats"), "calls": calls,
            "files_peak": peak, "files_end": end_files, "names": sorted(names), "foreign_jobs_at_start": foreign,
            "foreign_jobs_max": foreign_max, "load": os.getloadavg()[0],
            "elements": None, "alloc_core_s": None, "cpu_s": None, "idle_core_s": None,
            "driver_cpu_s": result.get("driver_cpu_s"),
            "phases": phases,
            "faults_cancelled": sum(1 for f in faults if "element" in f),
            "stderr_tail": err_tail if (outcome != "finished" or not result.get("correct")) else "",
        }
        if row["wall"] is None:
            row["wall"] = elapsed

        expected = expected_elements(calls_log, case.queue)

        def account() -> None:  # sacct lags behind: read it later, while the next runs go on
            time.sleep(8)
            acct = self.cluster.accounting(case.queue, names, t_start, expected)
            row.update(elements=acct.get("elements"), alloc_core_s=acct.get("alloc_core_s"), cpu_s=acct.get("cpu_s"))
            if acct.get("alloc_core_s") is not None:
                row["idle_core_s"] = acct["alloc_core_s"] - (acct["cpu_s"] if a.cpu else task_busy)

        t = threading.Thread(target=account, daemon=True)
        t.start()
        self.accounting_threads.append(t)
        if not a.keep_scratch:
            shutil.rmtree(base, ignore_errors=True)
        return row

    def _wait_gone(self, queue: str, names: set[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(j[0] in names for j in self.cluster.jobs(queue) if j[2]):
                return
            time.sleep(0.5)

    def run(self, cases: list[Case]) -> None:
        for case in cases:
            failed: set[str] = set()
            for rep in range(max(case.reps_for(s) for s in case.systems)):
                order = case.systems[rep % len(case.systems):] + case.systems[:rep % len(case.systems)]
                for system in order:
                    if rep >= case.reps_for(system):
                        continue
                    if system in failed:
                        self.log(f"{case.key} {system} rep {rep + 1}: skipped (failed or hung in an earlier run)")
                        continue
                    row = self.run_one(case, system, rep)
                    self.rows.append(row)
                    ok = "ok" if row["complete"] and row["correct"] else "INCOMPLETE/WRONG"
                    self.log(f"{case.key} {system} run {rep + 1}: {row['wall']:.1f} s {ok} {row['outcome']} "
                             f"calls={row['calls']} files={row['files_peak']}/{row['files_end']} "
                             f"rss={(row['maxrss_kb'] or 0) / 1024:.0f}MiB "
                             f"foreign jobs={row['foreign_jobs_at_start']}/{row['foreign_jobs_max']}")
                    if case.skip_after_failure and not (row["complete"] and row["correct"]):
                        failed.add(system)
                if rep == 0 and case.close_calls:
                    self._repeat_close_calls(case)

    def _repeat_close_calls(self, case: Case) -> None:
        """A peer run once whose time is close to (or better than) poolparty's first run decides the
        "faster than every peer" verdict: it gets as many runs as poolparty (a single run of a system that
        polls every 5 s is a coin toss)."""
        first = {r["system"]: r for r in self.rows if r["case"] == case.key and r["rep"] == 0}
        pp = first.get("poolparty")
        if not pp or not (pp["complete"] and pp["correct"]):
            return
        for s, r in first.items():
            if s in ("poolparty", "floor") or case.reps_for(s) >= case.reps or not (r["complete"] and r["correct"]):
                continue
            ideal = ideal_seconds(case, pp, self.a.max_running)
            if r["wall"] - ideal <= (pp["wall"] - ideal) * CLOSE_CALL:
                case.reps_by_system[s] = case.reps
                case.repeated.append(s)
                self.log(f"{case.key}: {s} ({r['wall']:.1f} s) is within {CLOSE_CALL}x of poolparty "
                         f"({pp['wall']:.1f} s) above the ideal {ideal:.1f} s: {case.reps} runs")

    def finish_accounting(self) -> None:
        for t in self.accounting_threads:
            t.join()

    def stop_live(self) -> None:
        """After an interruption: the current run's driver and fault injector (their own sessions)."""
        for p in getattr(self, "live", []):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self) -> None:
        for q in self.a.queues:
            mine = {j[0] for j in self.cluster.jobs(q) if j[0] in self.own_names or j[0].startswith(f"ppbench-{self.stamp}-")}
            if mine:
                self.cluster.cancel(q, mine)
        if not self.a.keep_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


# -- diagnosis (--profile) -----------------------------------------------------------------------
def startup_costs(bench: Bench, reps: int = 15) -> list[dict]:
    """CPU and wall time of one process of each kind a chunk can start, measured with wait4 (the
    CPU share is what matters when 16 slots share 2 cores). Interleaved, medians of ``reps``."""
    import statistics

    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="ppbench-startup-", dir=bench.scratch))
    batch = _one_chunk_batch(tmp, py)
    kinds = {
        "python -c pass": [py, "-c", "pass"],
        "floor element (16 tasks of 0 s)": [py, str(HERE / "cluster_tasks.py"), "floor", str(tmp), "16", "16", "0",
                                            "0", "-"],
        "floor element + poolparty.node.worker imports": [py, str(HERE / "cluster_tasks.py"), "floor", str(tmp), "16",
                                                     "16", "0", "0", "poolparty.node.worker"],
        "import os, sys, json, struct, zlib, fcntl, pickle (a lean worker's needs)":
            [py, "-c", "import os, sys, json, struct, zlib, fcntl, pickle"],
        "import cloudpickle": [py, "-c", "import cloudpickle"],
        "import dataclasses": [py, "-c", "import dataclasses"],
        "import poolparty.node.worker": [py, "-c", "import poolparty.node.worker"],
        "poolparty worker, one chunk of 16 tasks of 0 s": [py, "-m", "poolparty.node.worker", str(batch), "--sub", "0",
                                                          "--offset", "0", "--index-env", "SLURM_ARRAY_TASK_ID"],
        "import pypoolparty": [py, "-c", "import pypoolparty"],
        "import submitit (its job runs python -m submitit.core._submit)": [py, "-c", "import submitit.core._submit"],
        "import distributed (a dask worker, once per pilot)": [py, "-c", "import distributed"],
    }
    env = dict(bench.env, SLURM_ARRAY_TASK_ID="0")
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for i in range(reps):
        for kind, argv in kinds.items():
            for stale in (batch / "incoming").glob("*"):
                stale.unlink()
            env["SLURM_JOB_ID"] = str(900000 + i)
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            samples[kind].append((ru.ru_utime + ru.ru_stime, time.perf_counter() - t0))
    out = []
    for kind, xs in samples.items():
        out.append({"kind": kind, "cpu_ms": statistics.median(x[0] for x in xs) * 1000,
                    "wall_ms": statistics.median(x[1] for x in xs) * 1000})
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _one_chunk_batch(tmp: Path, py: str) -> Path:
    """A batch directory of one chunk of 16 zero-second tasks, written by poolparty itself."""
    code = (
        "import sys, os\n"
        "from pathlib import Path\n"
        "from poolparty.store.inputs import BatchFiles, encode_batch\n"
        "from poolparty.payload import Call, SharedFunction\n"
        "import cluster_tasks\n"
        "run = Path(sys.argv[1]) / 'run'; run.mkdir(mode=0o700); (run / 'batches').mkdir(mode=0o700)\n"
        "shared = SharedFunction(cluster_tasks.task, False, None, ())\n"
        "chunk = [(i, Call(None, ((i, 0.0, False),))) for i in range(16)]\n"
        "BatchFiles(run / 'batches' / '0001').write(encode_batch(shared, [chunk]), 'map')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(HERE))
    subprocess.run([py, "-c", code, str(tmp)], check=True, env=env)
    return tmp / "run" / "batches" / "0001"


def py_spy_driver(bench: Bench, n: int) -> dict | None:
    """One poolparty run at N tasks with py-spy sampling the driver: where its CPU time goes."""
    spy = shutil.which("py-spy") or str(REPO / ".venv" / "bin" / "py-spy")
    if not os.path.exists(spy):
        return None
    import collections

    base = Path(tempfile.mkdtemp(prefix="ppbench-pyspy-", dir=bench.scratch))
    (base / "shared").mkdir()
    raw = base / "raw.txt"
    spec = {"system": "poolparty", "queue": "slurm", "n": n, "seconds": bench.a.task_ms / 1000, "cpu": bench.a.cpu,
            "chunksize": chunksize_for(n, bench.a.max_running), "max_running": bench.a.max_running,
            "dir": str(base / "shared"), "name": "-", "names_file": str(base / "names"), "local_dir": str(base)}
    bench.wait_quiet("slurm")
    proc = subprocess.run([spy, "record", "--rate", "200", "--format", "raw", "--nonblocking", "-o", str(raw), "--",
                           sys.executable, str(HERE / "cluster_systems.py"), json.dumps(spec)],
                          cwd=base / "shared", env=bench.env, capture_output=True, text=True, timeout=600)
    names = _read_names(base / "names")
    bench.own_names |= names
    result = json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        total += k
        thread = "dispatcher thread" if any("Dispatcher._run" in fr for fr in frames) else "main thread"
        threads[thread] += k
        seen = set()
        for fr in frames:
            if "poolparty" not in fr or "cluster_systems" in fr:
                continue
            label = fr.split(" (")[0] + " (" + fr.rsplit("/", 1)[-1].split(":")[0] + ")"
            if label not in seen:
                seen.add(label)
                inclusive[label] += k
    shutil.rmtree(base, ignore_errors=True)
    return {"n": n, "rate": 200, "wall": result.get("wall"), "driver_cpu_s": result.get("driver_cpu_s"),
            "samples": total, "threads": dict(threads), "top": inclusive.most_common(25)}


def environment(bench: Bench) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    from importlib.metadata import version

    versions = {}
    for pkg in ("poolparty", "pypoolparty", "submitit", "dask-jobqueue", "distributed", "dask", "cloudpickle",
                "matplotlib"):
        try:
            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = "not installed"
    slurm_v = bench.cluster.run(["sinfo", "--version"]).strip() if "sinfo" in bench.cluster.real else ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "cores": os.cpu_count(),
        "python": platform.python_version(), "venv": sys.prefix, "versions": versions,
        "slurm": slurm_v, "max_array_size": bench.cluster.max_array_size() if "scontrol" in bench.cluster.real else "?",
        "git": f"{git('rev-parse', '--short', 'HEAD')}{' (dirty working tree)' if git('status', '--porcelain') else ''}",
        "load_start": os.getloadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (< 3 min): workload 1 at N = 1,000 for every system, workloads 2 and 3 for "
                         "poolparty and the floor, one run each, no SGE")
    ap.add_argument("--reps", type=int, help="runs of poolparty and the floor per case (default 3; --quick 1)")
    ap.add_argument("--peer-reps", type=int, help="runs of each peer per case (default 1)")
    ap.add_argument("--complete", action="store_true",
                    help="every system --reps times (about twice as long as the default: see README)")
    ap.add_argument("--big-peers", action="store_true", help="run the peers at N = 50,000 too (+2.5 min)")
    ap.add_argument("--profile", action="store_true",
                    help="diagnosis: poolparty, the floor, and the floor with poolparty's worker imports")
    ap.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], help="workload 1 task counts, e.g. 100,1000")
    ap.add_argument("--systems", type=lambda s: s.split(","), help="subset, e.g. poolparty,floor")
    ap.add_argument("--workloads", type=lambda s: s.split(","), default=["small", "long", "faulty"],
                    help="subset of small,long,faulty")
    ap.add_argument("--queues", type=lambda s: s.split(","), default=["slurm", "sge"], help="slurm,sge")
    ap.add_argument("--max-running", type=int, default=16, help="concurrency cap of every system (default 16)")
    ap.add_argument("--task-ms", type=float, default=10.0, help="workload 1 task duration (default 10 ms)")
    ap.add_argument("--cpu", action="store_true", help="tasks burn CPU instead of sleeping (needs real cores)")
    ap.add_argument("--hang-after", type=float, default=20.0,
                    help="a run with no job in the queue for this long while its driver waits is a hang")
    ap.add_argument("--time-limit", type=float, help="per run (default 90 s + 4x the ideal time)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="wait up to this long before each run for other users' jobs to leave the cluster")
    ap.add_argument("--quiet-budget", type=float, default=300.0,
                    help="total seconds the whole benchmark may spend waiting for other users' jobs")
    ap.add_argument("--scratch", help="parent of the systems' work directories (default: the temp dir)")
    ap.add_argument("--keep-scratch", action="store_true")
    ap.add_argument("--output", type=Path, help="results prefix (default results/cluster, results/cluster-quick)")
    ap.add_argument("--report-only", type=Path, help="re-render the table and plot from a saved .json")
    a = ap.parse_args()

    import cluster_report

    out = a.output or RESULTS / ("cluster-quick" if a.quick else "cluster-profile" if a.profile else "cluster")
    if a.report_only:
        data = json.loads(a.report_only.read_text())
        cluster_report.write(data, a.report_only.with_suffix(""))
        return 0
    bench = Bench(a)
    for q in list(a.queues):
        why = bench.cluster.available(q)
        if why:
            bench.log(f"{q}: not available ({why}); skipped")
            a.queues.remove(q)
    if not a.queues:
        print("no cluster reachable: start the test clusters (see ci/README.md)", file=sys.stderr)
        return 2
    cases = make_plan(a)
    env = environment(bench)
    env["command"] = " ".join(["benchmarks/bench_cluster.py", *sys.argv[1:]])
    bench.log(f"{len(cases)} case(s), scratch {bench.scratch}; warming the pycache prefix {bench.pycache}")
    bench.warm_up()
    extra: dict = {}
    try:
        bench.run(cases)
        if a.profile:
            bench.log("start-up cost per process (wait4), 15 interleaved runs each")
            extra["startup"] = startup_costs(bench)
            bench.log("py-spy on the poolparty driver")
            extra["py_spy"] = [x for x in (py_spy_driver(bench, n) for n in (a.ns or [1000, 10_000])[-1:]) if x]
    except BaseException:
        bench.log("interrupted or failed: cancelling this benchmark's jobs; no results written")
        bench.stop_live()
        bench.cleanup()
        raise
    bench.cleanup()
    bench.finish_accounting()
    env["total_s"] = time.monotonic() - bench.started
    env["quiet_wait_s"] = sum(r["phases"]["quiet_s"] for r in bench.rows)
    env["load_end"] = os.getloadavg()
    data = {"env": env, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
            "cases": [asdict(c) for c in cases], "rows": bench.rows, **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    summary = cluster_report.write(data, out)
    print(summary)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    # SIGTERM, and SIGINT even when started in the background (where the shell ignores it), stop the
    # benchmark through its clean-up: this benchmark's jobs are cancelled
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
