#!/usr/bin/env python
"""PoolPartyTaskRunner against prefect-dask's DaskTaskRunner on a dask-jobqueue SLURMCluster.

    python benchmarks/bench_prefect.py                  # 500 tasks of 1 s, prints a markdown table
    python benchmarks/bench_prefect.py --tasks 100      # quicker
    python benchmarks/bench_prefect.py --out results/prefect-500.md
    python benchmarks/bench_prefect.py --max-jobs 2     # no more jobs than the machine has cores

The same flow (``one_second.map(range(N))``, each task sleeping 1 s) runs against a fresh Prefect test
server (``prefect_test_harness``) with

1. ``PoolPartyTaskRunner(queue="slurm", max_running=J)`` (relay mode, its defaults otherwise),
2. ``DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster", cluster_kwargs={cores: 1, ...},
   adapt_kwargs={"maximum": J})``, the recipe users share for SLURM (1-core workers, adaptive),

with J = ``--max-jobs`` (default 16). The test SLURM node advertises 16 CPUs on a machine that may have
far fewer cores: with J above the real cores, a job that waits for a core (its Python start-up, Prefect's
engine) counts as allocated and idle; with J = the real cores it does not, as on a real cluster.

Per run: **wall** (from entering the flow to its result), **scheduler calls** (a PATH shim records every
``sbatch squeue sacct scancel scontrol`` the run makes), and **idle core-seconds** from ``sacct``: the
allocated core-seconds of the run's jobs (AllocCPUS x Elapsed) minus the N core-seconds the tasks
themselves need. Target (issue 5): poolparty no slower, and under a tenth of Dask's idle core-seconds.

Needs the test SLURM (``sudo ci/start-slurm.sh``) and a virtualenv of its own with this checkout and the
peers (not the project's .venv)::

    python3 -m venv /tmp/prefect-bench-venv
    /tmp/prefect-bench-venv/bin/pip install -e . -e distributions/prefect-poolparty prefect-dask dask-jobqueue
    /tmp/prefect-bench-venv/bin/python benchmarks/bench_prefect.py

Run it from a directory the jobs can see (its scratch directory is created there and removed).
Each run happens in a fresh interpreter (``--one``). Not part of the tests or CI.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sacct_time import slurm_seconds

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")
SHIM = """#!{python}
import json, os, sys, time
with open({log!r}, "a") as f:
    f.write(json.dumps({{"t": time.time(), "cmd": {cmd!r}, "argv": sys.argv[1:]}}) + "\\n")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""
SYSTEMS = ("poolparty", "dask")


# -- one run, in its own interpreter ----------------------------------------------------------------
def run_one(system: str, n: int, max_jobs: int, workdir: Path, out: Path) -> None:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.chdir(workdir)  # the shared directory the jobs write to (.poolparty/, dask logs)
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    @task
    def one_second(i: int) -> int:
        time.sleep(1)
        return i

    @flow
    def fan_out(n: int) -> int:
        return sum(f.result() for f in one_second.map(range(n)))

    job_name = f"ppbench-prefect-{system}-{int(time.time())}"
    if system == "poolparty":
        from prefect_poolparty import PoolPartyTaskRunner

        runner = PoolPartyTaskRunner(queue="slurm", max_running=max_jobs, polling_interval=2.0)
    else:
        from prefect_dask import DaskTaskRunner

        runner = DaskTaskRunner(
            cluster_class="dask_jobqueue.SLURMCluster",
            cluster_kwargs=dict(cores=1, processes=1, memory="1GB", walltime="00:30:00", job_name=job_name,
                                python=sys.executable, log_directory=str(workdir / "dask-logs"),
                                local_directory=str(workdir / "dask-scratch")),
            adapt_kwargs={"maximum": max_jobs})
    with prefect_test_harness(server_startup_timeout=180):
        t0 = time.time()
        total = fan_out.with_options(task_runner=runner)(n)
        wall = time.time() - t0
    names = [job_name]
    if system == "poolparty":
        names = [runner.reports[-1]["job_name"]]
    assert total == n * (n - 1) // 2, total
    out.write_text(json.dumps({"system": system, "wall": wall, "start": t0, "job_names": names}))


# -- the orchestrator -------------------------------------------------------------------------------
def install_shim(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        real = shutil.which(cmd)
        if real is None:
            raise SystemExit(f"{cmd} not found: start the test SLURM first (sudo ci/start-slurm.sh)")
        (bin_dir / cmd).write_text(SHIM.format(python=sys.executable, cmd=cmd, real=real, log=str(log)))
        (bin_dir / cmd).chmod(0o755)


def accounting(names: list[str], since: float) -> dict:
    """Allocated core-seconds and CPU seconds of the jobs of these names (slurmdbd lags: read until
    two reads agree and nothing is unfinished)."""
    start = datetime.datetime.fromtimestamp(since - 5).strftime("%Y-%m-%dT%H:%M:%S")
    previous, deadline = None, time.monotonic() + 120
    while True:
        out = subprocess.run(["sacct", "--noheader", "--parsable2", f"--name={','.join(names)}",
                              f"--starttime={start}", "--format=JobID,AllocCPUS,ElapsedRaw,TotalCPU,State"],
                             capture_output=True, text=True, timeout=60).stdout
        alloc = cpu = 0.0
        jobs = unfinished = 0
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) != 5 or "." in parts[0]:
                continue
            job, ncpu, elapsed, total, state = parts
            jobs += 1
            alloc += int(ncpu or 0) * int(elapsed or 0)
            cpu += slurm_seconds(total)
            if state.split()[0] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") or "[" in job:
                unfinished += 1
        now = {"jobs": jobs, "alloc_core_s": alloc, "cpu_s": cpu}
        if (jobs and not unfinished and now == previous) or time.monotonic() > deadline:
            return now
        previous = now
        time.sleep(2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=500)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--max-jobs", type=int, default=16, help="jobs at once for either runner (default 16)")
    p.add_argument("--out", type=Path, help="also write the table to this file")
    p.add_argument("--one", nargs=3, metavar=("SYSTEM", "WORKDIR", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        run_one(a.one[0], a.tasks, a.max_jobs, Path(a.one[1]), Path(a.one[2]))
        return
    rows = []
    base = Path(tempfile.mkdtemp(prefix="bench-prefect-", dir=Path.cwd()))  # shared with the jobs
    try:
        for system in a.systems.split(","):
            workdir = base / system
            workdir.mkdir()
            log = workdir / "calls.jsonl"
            install_shim(workdir / "shim", log)
            env = dict(os.environ, PATH=f"{workdir / 'shim'}{os.pathsep}{os.environ['PATH']}")
            print(f"[bench] {system}: {a.tasks} tasks of 1 s ...", file=sys.stderr, flush=True)
            out = workdir / "result.json"
            proc = subprocess.run([sys.executable, __file__, "--tasks", str(a.tasks), "--max-jobs", str(a.max_jobs), "--one", system,
                                   str(workdir), str(out)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(workdir / "run.log", "w"))
            if proc.returncode != 0 or not out.exists():
                print(f"[bench] {system} failed (rc={proc.returncode}); see {workdir / 'run.log'}", file=sys.stderr)
                continue
            result = json.loads(out.read_text())
            calls: dict[str, int] = {}
            for line in log.read_text().splitlines() if log.exists() else []:
                cmd = json.loads(line)["cmd"]
                calls[cmd] = calls.get(cmd, 0) + 1
            acct = accounting(result["job_names"], result["start"])
            idle = acct["alloc_core_s"] - a.tasks * 1.0
            rows.append({**result, "calls": calls, **acct, "idle_core_s": idle})
            print(f"[bench] {system}: wall {result['wall']:.1f} s, calls {calls}, jobs {acct['jobs']}, "
                  f"allocated {acct['alloc_core_s']:.0f} core-s, idle {idle:.0f} core-s", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(rows, a.tasks, a.max_jobs, a.out)


def report(rows: list[dict], n: int, max_jobs: int, dest: Path | None) -> None:
    lines = [f"# Prefect: PoolPartyTaskRunner vs DaskTaskRunner + dask-jobqueue SLURMCluster ({n} tasks of 1 s)",
             "", f"{platform.node()}, {os.cpu_count()} cores, {datetime.datetime.now():%Y-%m-%d %H:%M}; "
             f"at most {max_jobs} jobs at once. See `benchmarks/bench_prefect.py`.", "",
             "| runner | wall s | sbatch | squeue | sacct | scancel | scontrol | jobs | allocated core-s | "
             "jobs' CPU s | idle core-s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["calls"]
        lines.append(f"| {r['system']} | {r['wall']:.1f} | " + " | ".join(str(c.get(k, 0)) for k in COMMANDS) +
                     f" | {r['jobs']} | {r['alloc_core_s']:.0f} | {r['cpu_s']:.0f} | {r['idle_core_s']:.0f} |")
    by = {r["system"]: r for r in rows}
    if set(SYSTEMS) <= set(by):
        pp, dk = by["poolparty"], by["dask"]
        ratio = pp["idle_core_s"] / dk["idle_core_s"] if dk["idle_core_s"] > 0 else float("nan")
        lines += ["", f"Target: no slower ({pp['wall']:.1f} s vs {dk['wall']:.1f} s: "
                  f"{'met' if pp['wall'] <= dk['wall'] else 'missed'}), under a tenth of the idle core-seconds "
                  f"({ratio:.2f} of Dask's: {'met' if ratio < 0.1 else 'missed'})."]
    lines += ["", "idle core-s = allocated core-seconds of the run's jobs (sacct AllocCPUS x Elapsed) minus the "
              f"{n} core-seconds the tasks sleep; jobs' CPU s = their sacct TotalCPU (start-up, Prefect's engine; "
              "on an overcommitted node the start-up also waits for a core). Calls are every SLURM command of the "
              "run, inside its jobs too."]
    text = "\n".join(lines) + "\n"
    if dest is not None:
        dest.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
