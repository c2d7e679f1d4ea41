#!/usr/bin/env python
"""poolparty's embedded local queue against multiprocessing.Pool on this machine.

    python benchmarks/bench_local.py            # full run (~4 min on 2 cores) -> benchmarks/results/local.md
    python benchmarks/bench_local.py --quick    # smoke run (< 1 min)          -> benchmarks/results/local-quick.md

1. Throughput: N tasks of ~10 ms of CPU each (a calibrated busy loop, not a sleep) through
   ``poolparty.Pool(queue="local", max_running=P)`` and ``multiprocessing.Pool(P)``, P = os.cpu_count(),
   with each library's default chunksize and with an explicit equal chunksize; ``imap_unordered`` with
   default arguments; and ``Executor.submit`` in a loop + ``as_completed`` against
   ``ProcessPoolExecutor(P)``. Runs are interleaved
   (poolparty, multiprocessing, poolparty, ...), each in a fresh interpreter; the table shows medians.
2. Footprint: 10,000 trivial tasks: files in the work_dir (peak, sampled by a thread, and at the end with
   ``keep_work_dir=True``) and the driver's peak RSS (``ru_maxrss``, one fresh interpreter per measurement).
3. Per-chunk floor: start-up time of ``python -m poolparty.node.worker --help`` against ``python -c pass``.

It always measures the poolparty of this checkout (``../shared_core``), also in the local queue's worker
processes (through PYTHONPATH), whatever the virtualenv's editable install points at.
Not part of CI. Creates nothing outside the system temp dir (the pools' work_dirs, all removed) and
``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "shared_core"
TARGET_RATIO = 1.25
TARGET_STREAM_RATIO = 1.2  # imap_unordered and Executor.submit rows
TARGET_FILES = 50


def _use_this_checkout() -> None:
    sys.path.insert(0, str(SRC))
    old = os.environ.get("PYTHONPATH")
    if not (old or "").startswith(str(SRC)):
        os.environ["PYTHONPATH"] = str(SRC) + (os.pathsep + old if old else "")


_use_this_checkout()


# -- the tasks (module level: multiprocessing forks, poolparty pickles them by value from __main__) --
def spin(n: int) -> float:
    """Busy loop of n iterations; returns its own wall time (shows CPU contention)."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def trivial(x: int) -> int:
    return x


def calibrate(target: float = 0.010) -> tuple[int, float]:
    """Iterations of ``spin`` that take ``target`` seconds of CPU here (the fastest of several runs: other
    processes sharing a core slow it down); and the measured median."""
    def cpu(n: int) -> float:
        t0 = time.thread_time()
        spin(n)
        return time.thread_time() - t0

    n = 10_000
    while cpu(n) < 0.002:
        n *= 2
    for _ in range(3):
        n = max(1, int(n * target / min(cpu(n) for _ in range(11))))
    return n, statistics.median(cpu(n) for _ in range(21))


# -- measurements, each in a fresh interpreter ------------------------------------------------------
def _import(lib: str) -> None:
    """Import the library before the clock starts: the figures are the pool's, not the import's."""
    if lib == "pp":
        import poolparty.api.pool  # noqa: F401
    elif lib == "mp":
        import multiprocessing.pool  # noqa: F401


def _make_pool(lib: str, procs: int, **kw):
    if lib == "pp":
        import poolparty

        return poolparty.Pool(queue="local", max_running=procs, **kw)
    import multiprocessing

    return multiprocessing.Pool(procs)


def machine_cpu() -> float:
    """CPU seconds all processes of the machine have used (busy time in /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, window: float = 0.5, threshold: float = 0.2) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` of the machine's CPUs;
    return the share they used in the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        c0 = machine_cpu()
        time.sleep(window)
        share = (machine_cpu() - c0) / (window * (os.cpu_count() or 1))
        if share < threshold or time.monotonic() >= deadline:
            return share


def _submit_loop(lib: str, procs: int, items: list[int]) -> tuple[list[float], float]:
    """``submit`` in a loop, then ``as_completed``: poolparty.Executor against ProcessPoolExecutor."""
    import concurrent.futures as cf

    if lib == "pp":
        import poolparty

        ex = poolparty.Executor(max_workers=procs, queue="local")
    else:
        ex = cf.ProcessPoolExecutor(procs)
    with ex:
        futures = [ex.submit(spin, n) for n in items]
        durations = [f.result() for f in cf.as_completed(futures)]
        t_map = time.perf_counter()
    return durations, t_map


def child_throughput(spec: dict) -> dict:
    procs, chunksize = spec["procs"], spec["chunksize"]
    items = [spec["iters"]] * spec["n_tasks"]
    _import(spec["lib"])
    load = os.getloadavg()[0]
    ru0, ruc0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    m0 = machine_cpu()
    t0 = time.perf_counter()
    api = spec.get("api", "map")
    if api == "submit":
        durations, t_map = _submit_loop(spec["lib"], procs, items)
    else:
        pool = _make_pool(spec["lib"], procs)
        if api == "imap_unordered":  # default arguments: chunksize not given
            durations = list(pool.imap_unordered(spin, items))
        else:
            durations = pool.map(spin, items, chunksize)
        t_map = time.perf_counter()
        pool.close()
        pool.join()
    t1 = time.perf_counter()
    m1 = machine_cpu()
    ru1, ruc1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = lambda a, b: (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)  # noqa: E731
    assert len(durations) == spec["n_tasks"]
    ours = cpu(ru0, ru1) + cpu(ruc0, ruc1)
    others = max(0.0, (m1 - m0) - ours) / ((t1 - t0) * (os.cpu_count() or 1))
    return {"wall": t1 - t0, "map": t_map - t0, "driver_cpu": cpu(ru0, ru1), "workers_cpu": cpu(ruc0, ruc1),
            "task_median": statistics.median(durations), "load": load, "others": others}


def _count(path: Path) -> tuple[int, int]:
    files = dirs = 0
    for _, ds, fs in os.walk(path):
        files += len(fs)
        dirs += len(ds)
    return files, dirs


def child_files(spec: dict) -> dict:
    _import("pp")
    pool = _make_pool("pp", spec["procs"], keep_work_dir=True)
    work_dir = Path(pool.work_dir)
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while True:
            files, dirs = _count(work_dir)
            peak[0], peak[1] = max(peak[0], files), max(peak[1], dirs)
            if stop.wait(0.002):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        out = pool.map(trivial, range(spec["n_tasks"]), spec["chunksize"])
        pool.close()
        pool.join()
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        end_files, end_dirs = _count(work_dir)
        assert out == list(range(spec["n_tasks"]))
    finally:
        stop.set()
        shutil.rmtree(work_dir, ignore_errors=True)  # kept by keep_work_dir=True: ours to remove
    return {"peak_files": peak[0], "peak_dirs": peak[1], "end_files": end_files, "end_dirs": end_dirs,
            "wall": wall, "work_dir": str(work_dir)}


def child_memory(spec: dict) -> dict:
    items = list(range(spec["n_tasks"]))
    wall = 0.0
    _import(spec["lib"])
    after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if spec["lib"] != "none":
        t0 = time.perf_counter()
        pool = _make_pool(spec["lib"], spec["procs"])
        out = pool.map(trivial, items, spec["chunksize"])
        pool.close()
        pool.join()
        wall = time.perf_counter() - t0
        assert out == items
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "wall": wall,
            "import_kb": after_import}


CHILDREN = {"throughput": child_throughput, "files": child_files, "memory": child_memory}


def run_child(spec: dict, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup_time(argv: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- the report -----------------------------------------------------------------------------------
def fmt_runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run, < 1 min (fewer tasks, 1 run each)")
    ap.add_argument("--reps", type=int, help="runs per library and case (default 3; --quick 1)")
    ap.add_argument("--chunksize", type=int, default=10, help="the explicit equal chunksize (default 10)")
    ap.add_argument("--max-wait", type=float, help="seconds to wait before each throughput run for other "
                    "processes to leave the CPUs mostly idle (default 10; --quick 0)")
    ap.add_argument("--disturbed", type=float, default=0.15, help="a pair of runs during which other "
                    "processes used more than this share of the CPUs is run again (default 0.15)")
    ap.add_argument("--retries", type=int, help="how many disturbed pairs may be run again in all "
                    "(default 4; --quick 0)")
    ap.add_argument("--output", type=Path, help="markdown file (default results/local.md, "
                                                "results/local-quick.md with --quick)")
    ap.add_argument("--only", help="comma-separated throughput rows to run: default,10,imap_unordered,submit "
                    "(the other sections run as always)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        spec = json.loads(a._child)
        print(json.dumps(CHILDREN[spec["kind"]](spec)))
        return 0

    import poolparty

    if not Path(poolparty.__file__).resolve().is_relative_to(SRC):
        raise SystemExit(f"imported {poolparty.__file__}, not the checkout's {SRC}")
    started = time.perf_counter()
    # as an installed package would be: compiled once, not recompiled by every worker process
    # (this environment sets PYTHONDONTWRITEBYTECODE=1); the cache lives outside the source tree
    dont_write = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX",
                          os.path.join(tempfile.gettempdir(), f"ppbench-pycache-{os.getuid()}"))
    subprocess.run([sys.executable, "-m", "poolparty.node.worker", "--help"], stdout=subprocess.DEVNULL, check=True)
    procs = os.cpu_count() or 1
    reps = a.reps or (1 if a.quick else 3)
    if a.max_wait is None:
        a.max_wait = 0.0 if a.quick else 10.0
    if a.retries is None:
        a.retries = 0 if a.quick else 4
    n_tasks = 400 if a.quick else 2000
    n_trivial = 10_000
    load0 = os.getloadavg()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    wait_quiet(a.max_wait)
    iters, calibrated = calibrate()
    log(f"calibrated: spin({iters}) = {calibrated * 1e3:.2f} ms of CPU")

    # 1. throughput, interleaved poolparty / multiprocessing, a fresh interpreter per run
    cases = [("default", "map", None), (f"{a.chunksize}", "map", a.chunksize),
             ("imap_unordered", "imap_unordered", None), ("submit", "submit", None)]
    if a.only:
        cases = [c for c in cases if c[0] in a.only.split(",")]
    throughput = []
    retries_left = a.retries
    for label, api, chunksize in cases:
        runs: dict[str, list[dict]] = {"pp": [], "mp": []}
        disturbed: list[tuple[dict, dict]] = []
        while len(runs["pp"]) < reps:
            pair = {}
            for lib in ("pp", "mp"):  # interleaved: pp, mp, pp, mp, ...
                before = wait_quiet(a.max_wait)
                r = run_child({"kind": "throughput", "lib": lib, "procs": procs, "n_tasks": n_tasks,
                               "iters": iters, "chunksize": chunksize, "api": api})
                r["others_before"] = before
                pair[lib] = r
                log(f"throughput {api} chunksize={label} {lib} run {len(runs[lib]) + 1}/{reps}: {r['wall']:.2f} s "
                    f"(other processes: {before:.0%} of the CPUs before, {r['others']:.0%} during)")
            if max(pair["pp"]["others"], pair["mp"]["others"]) > a.disturbed and retries_left > 0:
                retries_left -= 1  # another program took the CPUs during this pair: run it again
                disturbed.append((pair["pp"], pair["mp"]))
                log(f"  pair disturbed by other processes: set aside, run again ({retries_left} retries left)")
                continue
            for lib in pair:
                runs[lib].append(pair[lib])
        throughput.append((label, api, chunksize, runs, disturbed))

    # 2. footprint of 10,000 trivial tasks
    files = run_child({"kind": "files", "procs": procs, "n_tasks": n_trivial, "chunksize": None})
    log(f"files: peak {files['peak_files']}, end {files['end_files']}")
    files_small = None
    if not a.quick:
        files_small = run_child({"kind": "files", "procs": procs, "n_tasks": n_trivial, "chunksize": 100})
        log(f"files (chunksize=100): peak {files_small['peak_files']}, end {files_small['end_files']}")
    memory: dict[str, list[dict]] = {"none": [], "pp": [], "mp": []}
    for rep in range(reps):
        for lib in ("pp", "mp", "none"):
            memory[lib].append(run_child({"kind": "memory", "lib": lib, "procs": procs, "n_tasks": n_trivial,
                                          "chunksize": None}))
        log(f"memory run {rep + 1}/{reps}: pp {memory['pp'][-1]['maxrss_kb']} KB, "
            f"mp {memory['mp'][-1]['maxrss_kb']} KB")

    # 3. per-chunk start-up floor
    su_reps = 3 if a.quick else 7
    su_worker = startup_time([sys.executable, "-m", "poolparty.node.worker", "--help"], su_reps)
    su_bare = startup_time([sys.executable, "-c", "pass"], su_reps)
    load1 = os.getloadavg()
    total = time.perf_counter() - started

    # -- render
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    lines = [
        f"# poolparty local queue vs multiprocessing.Pool{' (quick smoke run)' if a.quick else ''}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {platform.machine()}, {procs} CPU(s), "
        f"Python {platform.python_version()}, multiprocessing start method "
        f"`{__import__('multiprocessing').get_start_method()}`, poolparty from `{SRC}`. "
        f"Load average {load0[0]:.2f} at start, {load1[0]:.2f} at end (other processes on the machine "
        "skew the figures: see the others' CPU column and the pair ratios). "
        f"Bytecode cached in `{os.environ['PYTHONPYCACHEPREFIX']}` (PYTHONDONTWRITEBYTECODE={dont_write!r} "
        "unset for the measurements). "
        f"Total bench time {total:.0f} s.",
        "",
        f"## 1. Throughput: {n_tasks:,} tasks of {calibrated * 1e3:.1f} ms CPU (spin({iters:,})), P = {procs}",
        "",
        f"Wall time from constructing the pool to `close(); join()` returning, median of {reps} interleaved "
        "run(s), each in a fresh interpreter. \"Task\" is the median wall time of one task measured inside "
        "the worker (above the calibrated value when CPUs are contended). Overhead/chunk = "
        "(poolparty - multiprocessing) x P / chunks. Pair ratios: each poolparty run over the multiprocessing "
        "run right after it (same machine conditions). CPU ratio: driver + workers CPU seconds, pp / mp "
        "(less sensitive to other load than wall time). Others' CPU: the share of the machine's CPUs that "
        "other processes used during the runs (/proc/stat minus our own rusage), median mp / pp: above a few "
        "percent, the wall times are skewed; a pair of runs during which they used more than "
        f"{a.disturbed:.0%} is set aside and run again (at most {a.retries} times in all).",
        "",
        "| chunksize | chunks | multiprocessing s | poolparty s | **ratio pp/mp** | target | pair ratios "
        "| overhead/chunk | CPU ratio | driver CPU s mp / pp | worker CPU s mp / pp | task ms mp / pp "
        "| runs mp s | runs pp s | others' CPU |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---|---|---|---|---|---|",
    ]
    ratios = {}
    for label, api, chunksize, runs, disturbed in throughput:
        cs = chunksize or max(1, -(-n_tasks // (procs * 4)))  # both libraries' default policy
        if api != "map":  # poolparty's own choice (api/streaming.py); multiprocessing's is 1 task per chunk
            cs = max(1, -(-n_tasks // (procs * 16)))
        n_chunks = -(-n_tasks // cs)
        mp_w, pp_w = med(runs["mp"], "wall"), med(runs["pp"], "wall")
        ratio = pp_w / mp_w
        pairs = [b["wall"] / a["wall"] for a, b in zip(runs["mp"], runs["pp"])]
        cpu_of = lambda rs: statistics.median(r["driver_cpu"] + r["workers_cpu"] for r in rs)  # noqa: E731
        ratios[label] = ratio
        name = f"default ({cs})" if chunksize is None else f"{chunksize} (explicit)"
        if api == "imap_unordered":
            name = f"`imap_unordered` default (pp {cs}, mp 1)"
        elif api == "submit":
            name = f"`Executor.submit` x {n_tasks} + `as_completed` (pp {cs}/job, ProcessPoolExecutor)"
        target = TARGET_RATIO if api == "map" else TARGET_STREAM_RATIO
        verdict = "ok" if ratio <= target else "**missed**"
        lines.append(
            f"| {name} | {n_chunks} | {mp_w:.2f} | {pp_w:.2f} | **{ratio:.2f}x** | <= {target}x {verdict} "
            f"| {', '.join(f'{x:.2f}' for x in pairs)} | {(pp_w - mp_w) * procs / n_chunks * 1e3:.0f} ms "
            f"| {cpu_of(runs['pp']) / cpu_of(runs['mp']):.2f}x "
            f"| {med(runs['mp'], 'driver_cpu'):.2f} / {med(runs['pp'], 'driver_cpu'):.2f} "
            f"| {med(runs['mp'], 'workers_cpu'):.1f} / {med(runs['pp'], 'workers_cpu'):.1f} "
            f"| {med(runs['mp'], 'task_median') * 1e3:.1f} / {med(runs['pp'], 'task_median') * 1e3:.1f} "
            f"| {fmt_runs([r['wall'] for r in runs['mp']])} | {fmt_runs([r['wall'] for r in runs['pp']])} "
            f"| {med(runs['mp'], 'others'):.0%} / {med(runs['pp'], 'others'):.0%}"
            f"{f' ({len(disturbed)} disturbed pair(s) set aside)' if disturbed else ''} |")
    base_kb = med(memory["none"], "maxrss_kb")
    pp_kb, mp_kb = med(memory["pp"], "maxrss_kb"), med(memory["mp"], "maxrss_kb")
    lines += [
        "",
        f"## 2. Footprint: {n_trivial:,} trivial tasks (identity function over `range({n_trivial:,})`, default chunksize)",
        "",
        "Files: every file below the pool's work_dir (directories counted apart), peak sampled every 2 ms "
        "by a thread during the run, and after `close(); join()` with `keep_work_dir=True`. Memory: the "
        f"driver's `ru_maxrss`, median of {reps} fresh interpreter(s) per library; the baseline is the same "
        "script building the inputs without importing or using any pool.",
        "",
        "| measurement | poolparty | multiprocessing | target |",
        "|---|---:|---:|---|",
    ]
    for fr, label in ((files, "default"), (files_small, "100")):
        if fr is None:
            continue
        chunks = -(-n_trivial // (max(1, -(-n_trivial // (procs * 4))) if label == "default" else 100))
        ok = "ok" if fr["peak_files"] < TARGET_FILES else "**missed**"
        lines += [
            f"| work_dir files, peak (chunksize {label}, {chunks} chunks) | {fr['peak_files']} "
            f"(+{fr['peak_dirs']} dirs) | n/a | < {TARGET_FILES} {ok} |",
            f"| work_dir files, end, keep_work_dir=True (chunksize {label}) | {fr['end_files']} "
            f"(+{fr['end_dirs']} dirs) | n/a | < {TARGET_FILES} |",
            f"| wall time s (chunksize {label}, with the sampler) | {fr['wall']:.2f} | | |",
        ]
    lines += [
        f"| driver peak RSS (ru_maxrss) | {pp_kb / 1024:.1f} MiB | {mp_kb / 1024:.1f} MiB | |",
        f"| driver peak RSS above baseline ({base_kb / 1024:.1f} MiB) | {(pp_kb - base_kb) / 1024:.1f} MiB "
        f"| {(mp_kb - base_kb) / 1024:.1f} MiB | |",
        f"| of which importing the library | {(med(memory['pp'], 'import_kb') - base_kb) / 1024:.1f} MiB "
        f"| {(med(memory['mp'], 'import_kb') - base_kb) / 1024:.1f} MiB | |",
        f"| wall time s (default chunksize) | {med(memory['pp'], 'wall'):.2f} | {med(memory['mp'], 'wall'):.2f} "
        "| |",
        f"| driver RSS runs KiB | {', '.join(str(r['maxrss_kb']) for r in memory['pp'])} "
        f"| {', '.join(str(r['maxrss_kb']) for r in memory['mp'])} | |",
        "",
        "## 3. Per-chunk start-up floor",
        "",
        f"Median of {su_reps} runs: `python -m poolparty.node.worker --help` (interpreter + the worker's imports) "
        f"**{su_worker * 1e3:.0f} ms**, `python -c pass` {su_bare * 1e3:.0f} ms. Every chunk of the local "
        "queue pays at least the first figure (plus `/bin/sh job.sh`), multiprocessing pays it once per "
        "worker.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    out = a.output or HERE / "results" / ("local-quick.md" if a.quick else "local.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
