#!/usr/bin/env python
"""Driver memory of a streaming map: 1,000,000 inputs from a generator through ``Pool.imap`` on the
local queue, against ``multiprocessing.Pool.imap``, each in a fresh interpreter.

    python benchmarks/bench_stream_memory.py                      # -> benchmarks/results/stream-memory.md
    python benchmarks/bench_stream_memory.py --src OTHER/shared_core --label before --output /tmp/x.md

Peak RSS is the driver's ``ru_maxrss`` (the local queue's workers are other processes); the baseline is
the same interpreter after importing the library, before the pool. The results are consumed and
checked as they come (a running sum), so the figure is what the map itself holds. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def trivial(x: int) -> int:
    return x


def child(spec: dict) -> dict:
    n, chunksize = spec["n"], spec["chunksize"]
    if spec["lib"] == "pp":
        import poolparty

        pool = poolparty.Pool(queue="local", max_running=spec["procs"])
    else:
        import multiprocessing

        pool = multiprocessing.Pool(spec["procs"])
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    total = 0
    for value in pool.imap(trivial, (i for i in range(n)), chunksize):
        total += value
    wall = time.perf_counter() - t0
    pool.close()
    pool.join()
    assert total == n * (n - 1) // 2
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "base_kb": base_kb, "wall": wall,
            "poolparty": getattr(sys.modules.get("poolparty"), "__file__", "")}


def run(spec: dict, src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--chunksize", type=int, default=1000, help="the same for both libraries (default 1000)")
    ap.add_argument("--src", type=Path, default=HERE.parent / "shared_core", help="poolparty checkout to measure")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "stream-memory.md")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(child(json.loads(a._child))))
        return 0
    procs = os.cpu_count() or 1
    rows = []
    for lib in ("pp", "mp"):
        r = run({"lib": lib, "n": a.n, "chunksize": a.chunksize, "procs": procs}, a.src.resolve())
        rows.append((lib, r))
        print(f"{lib}: peak {r['maxrss_kb'] / 1024:.0f} MiB, {r['wall']:.1f} s", file=sys.stderr)
    lines = [
        f"# Driver memory of `imap` over a generator of {a.n:,} inputs (chunksize {a.chunksize}), {a.label}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {procs} CPU(s), Python {platform.python_version()}, "
        f"poolparty from `{a.src}`; local queue, max_running = {procs}. One fresh interpreter per row.",
        "",
        "| library | driver peak RSS | of which above the imported library | wall s |",
        "|---|---:|---:|---:|",
    ]
    for lib, r in rows:
        name = "poolparty.Pool" if lib == "pp" else "multiprocessing.Pool"
        lines.append(f"| {name} | {r['maxrss_kb'] / 1024:.0f} MiB | {(r['maxrss_kb'] - r['base_kb']) / 1024:.0f} MiB "
                     f"| {r['wall']:.1f} |")
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
