#!/usr/bin/env python
"""This checkout against an earlier revision of poolparty, side by side, on the same workloads.

    python benchmarks/bench_revisions.py --base HEAD~3                    # local queue only
    python benchmarks/bench_revisions.py --base 501822f --queues local,slurm,sge --reps 5

For a change that must not slow anything down (a refactoring): the base revision is checked out into a
temporary git worktree, and each workload runs alternately with the base tree and with this checkout
(base, this, base, this, ...), each run a fresh interpreter whose ``PYTHONPATH`` (inherited by the
local queue's workers and, through ``--export=ALL`` / ``qsub -V``, by cluster jobs) points at that
tree. The table shows each side's median wall time and the median of the pair-by-pair ratios
(this / base), so a drift of the machine's speed during the run cancels out.

Workloads, each one process that starts a pool, runs it and closes it:
  - ``map``: ``Pool.map`` of N tasks of 10 ms (sleep) with ``chunksize=10``;
  - ``submit``: ``Executor.submit`` of N/4 calls of 10 ms, consumed with ``as_completed``;
on each queue named by ``--queues`` (``slurm``/``sge`` need the test clusters of ``ci/``).

Writes ``benchmarks/results/revisions-<base>.md``. Not part of CI.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

WORKLOAD = r"""
import sys, time
from concurrent.futures import as_completed
import poolparty

def nap(x):
    time.sleep(0.01)
    return x

kind, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "map":
    with poolparty.Pool(queue=queue, max_running=16, progress=False) as pool:
        assert pool.map(nap, range(n), chunksize=10) == list(range(n))
else:
    with poolparty.Executor(max_workers=16, queue=queue) as ex:
        futures = [ex.submit(nap, i) for i in range(n // 4)]
        assert sorted(f.result() for f in as_completed(futures)) == list(range(n // 4))
"""


def checkout(rev: str, into: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(into), rev], check=True)


def remove_checkout(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


def run_once(tree: Path, kind: str, queue: str, n: int, scratch: Path) -> float:
    """Wall seconds of one whole workload process using the poolparty in ``tree``."""
    env = dict(os.environ, PYTHONPATH=f"{tree / 'shared_core'}{os.pathsep}{tree / 'executors'}",
               POOLPARTY_WORK_ROOT=str(scratch))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WORKLOAD, kind, queue, str(n)], env=env, cwd=scratch,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {queue} with {tree} failed:\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the revision to compare against (e.g. HEAD~1, a hash)")
    ap.add_argument("--queues", default="local", help="comma-separated: local,slurm,sge (default local)")
    ap.add_argument("--workloads", default="map,submit", help="comma-separated: map,submit")
    ap.add_argument("--n", type=int, default=1000, help="tasks of the map workload (default 1000)")
    ap.add_argument("--reps", type=int, default=3, help="pairs per workload and queue (default 3)")
    args = ap.parse_args()
    base_hash = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.base], check=True,
                               capture_output=True, text=True).stdout.strip()
    this_hash = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True,
                               capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pp-revisions-") as tmp:
        base_tree = Path(tmp) / "base"
        checkout(args.base, base_tree)
        try:
            for queue in args.queues.split(","):
                scratch = Path(tmp) / f"scratch-{queue}"
                scratch.mkdir()
                for kind in args.workloads.split(","):
                    run_once(REPO, kind, queue, args.n, scratch)  # warm-up: page cache, imports
                    pairs = []
                    for rep in range(args.reps):
                        b = run_once(base_tree, kind, queue, args.n, scratch)
                        t = run_once(REPO, kind, queue, args.n, scratch)
                        pairs.append((b, t))
                        print(f"{queue} {kind} pair {rep + 1}: base {b:.2f} s, this {t:.2f} s, "
                              f"ratio {t / b:.3f}", file=sys.stderr)
                    ratios = [t / b for b, t in pairs]
                    rows.append((queue, kind, statistics.median(b for b, _ in pairs),
                                 statistics.median(t for _, t in pairs), statistics.median(ratios),
                                 min(ratios), max(ratios)))
        finally:
            remove_checkout(base_tree)
    lines = [f"# poolparty {this_hash} against {base_hash}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"{args.reps} pairs per row (base, this, alternately; one warm-up run first), "
             f"map: {args.n} tasks of 10 ms, chunksize 10; submit: {args.n // 4} calls of 10 ms; max_running 16.",
             "", "| queue | workload | base median s | this median s | ratio this/base (median of pairs) | "
                 "min | max |", "|---|---|---|---|---|---|---|"]
    for queue, kind, b, t, r, lo, hi in rows:
        lines.append(f"| {queue} | {kind} | {b:.2f} | {t:.2f} | **{r:.3f}** | {lo:.3f} | {hi:.3f} |")
    out = HERE / "results" / f"revisions-{base_hash}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
