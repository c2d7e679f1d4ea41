#!/usr/bin/env python
"""Scheduler calls per minute when one user runs 8 maps at once: poolparty (this checkout), poolparty
before the shared status snapshot (``--base``, a git revision checked out into a temporary worktree), and
8 submitit drivers, side by side in one run on the real test clusters of ``ci/``.

    sudo SLURM_MAX_ARRAY_SIZE=101 ci/start-slurm.sh && sudo ci/start-sge.sh
    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install submitit   # the peer, NOT in .venv
    .venv/bin/python benchmarks/bench_scheduler_calls.py --base a96be5d --peer-python /tmp/bench-venv/bin/python

Each system runs 8 driver processes of the same user at once; each driver maps ``--tasks`` tasks of
``--seconds`` seconds (sleep) with at most 2 running, driven as its documentation shows with its own
defaults (polling intervals included). Every scheduler command goes through a PATH shim that logs it
(command, time), so the count is exact and a loaded machine changes no count, only how long the maps
take: calls per minute divide by each system's own wall time. The machine's load average is in the
table. SGE: poolparty only (submitit has no SGE executor). Writes
``benchmarks/results/scheduler-calls.md``. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMANDS = {"slurm": ("sbatch", "squeue", "scancel", "scontrol", "sacct"), "sge": ("qsub", "qstat", "qdel", "qacct")}
STATUS = {"slurm": ("squeue", "sacct"), "sge": ("qstat", "qacct")}
SHIM = """#!{python}
import json, os, sys, time
with open({log!r}, "a") as f:
    f.write(json.dumps({{"t": time.time(), "cmd": os.path.basename(sys.argv[0])}}) + "\\n")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""

POOLPARTY_DRIVER = r"""
import sys, time
import poolparty

def nap(args):
    x, seconds = args
    time.sleep(seconds)
    return x

queue, n = sys.argv[1], int(sys.argv[2])
with poolparty.Pool(queue=queue, max_running=2, progress=False, work_root=sys.argv[4]) as pool:
    assert pool.map(nap, [(x, float(sys.argv[3])) for x in range(n)], chunksize=1) == list(range(n))
"""

SUBMITIT_DRIVER = r"""
import sys, time
import submitit

def nap(args):
    x, seconds = args
    time.sleep(seconds)
    return x

n = int(sys.argv[2])
ex = submitit.SlurmExecutor(folder=sys.argv[4])
ex.update_parameters(time=60, cpus_per_task=1, array_parallelism=2)
jobs = ex.map_array(nap, [(x, float(sys.argv[3])) for x in range(n)])
assert [j.result() for j in jobs] == list(range(n))
"""


def install_shims(bin_dir: Path, kind: str, log: Path) -> None:
    bin_dir.mkdir(parents=True)
    for cmd in COMMANDS[kind]:
        real = shutil.which(cmd)
        if real:
            (bin_dir / cmd).write_text(SHIM.format(python=sys.executable, real=real, log=str(log)))
            (bin_dir / cmd).chmod(0o755)


def run_system(label: str, kind: str, python: str, code: str, pythonpath: str | None, args: argparse.Namespace,
               tmp: Path) -> dict:
    """8 drivers at once; their scheduler calls, counted by the shims."""
    case = tmp / f"{kind}-{label.split()[0]}{'-base' if ' ' in label else ''}"
    log = case / "calls.jsonl"
    install_shims(case / "bin", kind, log)
    env = dict(os.environ, PATH=f"{case / 'bin'}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(case))
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    load = os.getloadavg()[0]
    started = time.monotonic()
    procs = [subprocess.Popen([python, "-c", code, kind, str(args.tasks), str(args.seconds), str(case / f"d{i}")],
                              env=env, cwd=case, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(args.drivers)]
    failed = [p.communicate(timeout=1800)[1][-400:] for p in procs if p.wait() != 0]
    wall = time.monotonic() - started
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    by_cmd = {c: sum(1 for r in calls if r["cmd"] == c) for c in COMMANDS[kind]}
    status = sum(by_cmd[c] for c in STATUS[kind])
    row = {"system": label, "queue": kind, "wall": wall, "calls": len(calls), "status": status, "by_cmd": by_cmd,
           "per_minute": len(calls) / wall * 60, "status_per_minute": status / wall * 60,
           "load": (load + os.getloadavg()[0]) / 2, "failed": len(failed)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    for err in failed:
        print(f"  a driver failed: ...{err}", file=sys.stderr)
    return row


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Scheduler calls of 8 concurrent maps of one user",
        "",
        f"`python benchmarks/bench_scheduler_calls.py --base {args.base}` on the single-node test clusters "
        f"(SLURM 22.05, SGE 8.1.9; 2 vCPUs shared with other work). {args.drivers} driver processes of one user "
        f"at once, each mapping {args.tasks} tasks of {args.seconds:g} s with at most 2 running; every "
        "scheduler command counted by a PATH shim. Calls are counts (a loaded machine changes none, only the "
        "wall time); per minute divides by each system's own wall time.",
        "",
        "| queue | system | wall s | load avg | all calls | status calls | calls/min | status calls/min | per command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cmds = ", ".join(f"{c} {n}" for c, n in r["by_cmd"].items() if n)
        note = f" ({r['failed']} driver(s) failed)" if r["failed"] else ""
        lines.append(f"| {r['queue']} | {r['system']}{note} | {r['wall']:.0f} | {r['load']:.1f} | {r['calls']} | "
                     f"{r['status']} | {r['per_minute']:.1f} | {r['status_per_minute']:.1f} | {cmds} |")
    lines += ["", "Ratios (status calls per minute, this checkout = 1):", ""]
    for kind in ("slurm", "sge"):
        mine = next((r for r in rows if r["queue"] == kind and r["system"] == "poolparty"), None)
        for r in rows:
            if mine and r["queue"] == kind and r is not mine and mine["status_per_minute"]:
                lines.append(f"- {kind}: {r['system']} makes {r['status_per_minute'] / mine['status_per_minute']:.1f}x "
                             "the status calls per minute of poolparty")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="a96be5d", help="poolparty revision before the shared snapshot")
    p.add_argument("--peer-python", default="/tmp/bench-venv/bin/python", help="interpreter with submitit")
    p.add_argument("--queues", default="slurm,sge")
    p.add_argument("--drivers", type=int, default=8)
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            for kind in args.queues.split(","):
                rows.append(run_system("poolparty", kind, sys.executable, POOLPARTY_DRIVER,
                                       str(REPO / "shared_core"), args, tmp))
                rows.append(run_system(f"poolparty {args.base} (one query per pool)", kind, sys.executable,
                                       POOLPARTY_DRIVER, str(base / "shared_core"), args, tmp))
                if kind == "slurm" and Path(args.peer_python).exists():
                    rows.append(run_system("submitit", kind, args.peer_python, SUBMITIT_DRIVER, None, args, tmp))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    out = HERE / "results" / "scheduler-calls.md"
    out.write_text(table(rows, args))
    print(out.read_text())


if __name__ == "__main__":
    main()
