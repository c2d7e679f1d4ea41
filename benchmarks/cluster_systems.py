"""One system's driver for one benchmark run, in a fresh interpreter (so ``ru_maxrss`` is its own):

    python cluster_systems.py '<json spec>'      # prints one JSON line: timings, correctness, peak RSS

The spec names the system, the queue (slurm|sge), the tasks (n, seconds, cpu), the chunking, the
concurrency cap, the directory the system may write to (``dir``: its work/log directory, counted by
the orchestrator) and the job name to use where the system lets the caller choose one. Started by
``bench_cluster.py`` with a PATH shim in front of the scheduler commands (so every call is counted)
and with this directory on PYTHONPATH (so the nodes import ``cluster_tasks``).

Wall time runs from creating the pool/executor/cluster (imports done) to having every result in hand
(``wall``); ``total`` adds closing it. Nothing here retries or waits longer than the system itself does:
a system that hangs is stopped by the orchestrator's time limit.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster_tasks  # noqa: E402
from cluster_tasks import expected, make_chunks, make_items, run_chunk, task  # noqa: E402


def _declare(spec: dict, *names: str) -> None:
    """Tell the orchestrator (hang watcher, fault injector, sacct) this run's job names at once."""
    with open(spec["names_file"], "a") as f:
        for n in names:
            f.write(n + "\n")


# -- the systems -----------------------------------------------------------------------------------
def run_poolparty(spec: dict, items: list, chunks: list) -> dict:
    import poolparty

    t0 = time.perf_counter()
    pool = poolparty.Pool(queue=spec["queue"], max_running=spec["max_running"], work_root=spec["dir"])
    _declare(spec, pool.engine.name)
    out = pool.map(task, items, chunksize=spec["chunksize"])
    t1 = time.perf_counter()
    stats = dict(pool.engine.stats)
    pool.close()
    pool.join()
    return {"wall": t1 - t0, "total": time.perf_counter() - t0, "results": out, "stats": stats,
            "version": _version("poolparty")}


def run_pypoolparty(spec: dict, items: list, chunks: list) -> dict:
    if spec["queue"] == "slurm":
        # the array pool ignores chunksize (one array element per item): it maps over our chunks instead
        from pypoolparty.slurm.array import Pool

        t0 = time.perf_counter()
        pool = Pool(num_simultaneously_running_tasks=spec["max_running"], python_path=sys.executable,
                    work_dir=spec["dir"])
        nested = pool.map(run_chunk, chunks)
        out = None if any(r is None for r in nested) else [x for r in nested for x in r]
    else:
        # the SGE pool (plain qsub per chunk) honours chunksize; it has no concurrency cap. It submits with
        # `qsub -S <python_path>` and without -V: SGE starts that interpreter by its bare name, so a venv's
        # python does not find its own site-packages (every job dies with ModuleNotFoundError and map()
        # returns None for every task, raising nothing). A two-line wrapper that execs the venv's python
        # by full path, with the environment the other systems' jobs get, makes it work.
        from pypoolparty import sun_grid_engine

        wrapper = Path(spec["local_dir"]) / "python.sh"
        exports = "".join(f"export {k}='{os.environ[k]}'\n" for k in ("PYTHONPATH", "PYTHONPYCACHEPREFIX")
                          if k in os.environ)
        wrapper.write_text(f"#!/bin/sh\n{exports}exec {sys.executable} \"$@\"\n")
        wrapper.chmod(0o755)
        t0 = time.perf_counter()
        pool = sun_grid_engine.Pool(python_path=str(wrapper), work_dir=spec["dir"])
        out = pool.map(task, items, chunksize=spec["chunksize"])
    t1 = time.perf_counter()
    return {"wall": t1 - t0, "total": t1 - t0, "results": out, "version": _version("pypoolparty")}


def run_submitit(spec: dict, items: list, chunks: list) -> dict:
    import submitit

    t0 = time.perf_counter()
    ex = submitit.SlurmExecutor(folder=spec["dir"])
    ex.update_parameters(job_name=spec["name"], time=60, cpus_per_task=1, array_parallelism=spec["max_running"])
    _declare(spec, spec["name"])
    jobs = ex.map_array(run_chunk, chunks)
    nested = [j.result() for j in jobs]
    out = [x for r in nested for x in r]
    t1 = time.perf_counter()
    return {"wall": t1 - t0, "total": t1 - t0, "results": out, "version": _version("submitit")}


def run_dask(spec: dict, items: list, chunks: list) -> dict:
    import logging

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    cluster = SLURMCluster(cores=1, processes=1, memory="1GB", walltime="00:30:00", job_name=spec["name"],
                           log_directory=spec["dir"], python=sys.executable,
                           local_directory=spec["local_dir"],
                           scheduler_options={"dashboard_address": None})
    _declare(spec, spec["name"])
    cluster.adapt(minimum_jobs=0, maximum_jobs=spec["max_running"])
    client = Client(cluster)
    futures = client.map(run_chunk, chunks, pure=False)  # one dask task per chunk (the same chunks)
    nested = client.gather(futures)
    out = [x for r in nested for x in r]
    t1 = time.perf_counter()
    client.close()
    cluster.close()
    return {"wall": t1 - t0, "total": time.perf_counter() - t0, "results": out,
            "version": f"dask-jobqueue {_version('dask_jobqueue')}, distributed {_version('distributed')}"}


LEAN_IMPORTS = "json,struct,zlib,fcntl,pickle"


def run_floor(spec: dict, items: list, chunks: list, imports: str = "-") -> dict:
    """The hand-written floor: one array job over the same chunks, results as text, a 0.1 s file poll.
    ``imports``: modules each element imports first (the diagnoses, not systems)."""
    d = Path(spec["dir"])
    out_dir = d / "out"
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True)
    script = d / "floor.sh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {cluster_tasks.__file__} floor \"$@\"\n")
    script.chmod(0o755)
    args = [str(out_dir), str(spec["n"]), str(spec["chunksize"]), repr(spec["seconds"]), "1" if spec["cpu"] else "0",
            imports]
    n_chunks, cap, name = len(chunks), spec["max_running"], spec["name"]
    _declare(spec, name)
    if spec["queue"] == "slurm":
        subprocess.run(["sbatch", "--parsable", f"--job-name={name}", f"--array=0-{n_chunks - 1}%{cap}",
                        "--output=/dev/null", f"--chdir={d}", str(script), *args],
                       check=True, capture_output=True, text=True)
    else:
        subprocess.run(["qsub", "-terse", "-N", name, "-t", f"1-{n_chunks}", "-tc", str(cap), "-V", "-j", "y",
                        "-o", "/dev/null", "-wd", str(d), "-S", "/bin/sh", str(script), *args],
                       check=True, capture_output=True, text=True)
    last_check, gone_since = time.monotonic(), None
    while True:
        done = sum(1 for e in os.scandir(out_dir) if e.name.endswith(".txt"))
        if done == n_chunks:
            break
        now = time.monotonic()
        if now - last_check >= 2.0:  # notice a dead element instead of waiting forever
            last_check = now
            if _floor_jobs_left(spec["queue"], name):
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since >= 2.0:
                break
        time.sleep(0.1)
    got: dict[int, int] = {}
    for e in os.scandir(out_dir):
        if e.name.endswith(".txt"):
            for line in open(e.path):
                i, r = line.split()
                got[int(i)] = int(r)
    out = [got.get(i) for i in range(spec["n"])]
    t1 = time.perf_counter()
    return {"wall": t1 - t0, "total": t1 - t0, "results": out, "version": "sbatch --array / qsub -t"}


def _floor_jobs_left(queue: str, name: str) -> bool:
    if queue == "slurm":
        out = subprocess.run(["squeue", "--noheader", f"--name={name}", "--format=%i"],
                             capture_output=True, text=True).stdout
        return bool(out.strip())
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True).stdout
    return any(j.findtext("JB_name") == name for j in ET.fromstring(out).iter("job_list"))


SYSTEMS: dict[str, Callable[[dict, list, list], dict]] = {
    "poolparty": run_poolparty, "pypoolparty": run_pypoolparty, "submitit": run_submitit,
    "dask-jobqueue": run_dask, "floor": run_floor,
    "floor+imports": lambda spec, items, chunks: run_floor(spec, items, chunks, imports="poolparty.node.worker"),
    "floor+lean": lambda spec, items, chunks: run_floor(spec, items, chunks, imports=LEAN_IMPORTS),
}


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return "?"


def main(spec: dict) -> dict:
    items = make_items(spec["n"], spec["seconds"], spec["cpu"])
    chunks = make_chunks(items, spec["chunksize"])
    try:
        r = SYSTEMS[spec["system"]](spec, items, chunks)
        error = None
    except BaseException as e:  # reported, not raised: a failure is a measurement too
        r, error = {"results": None}, f"{type(e).__name__}: {e}"[:400]
        traceback.print_exc()
    out = r.pop("results")
    want = [expected(i) for i in range(spec["n"])]
    r["n_results"] = 0 if out is None else sum(x is not None for x in out)
    r["complete"] = out is not None and len(out) == spec["n"] and r["n_results"] == spec["n"]
    r["correct"] = out == want
    r["error"] = error
    ru = resource.getrusage(resource.RUSAGE_SELF)
    r["maxrss_kb"] = ru.ru_maxrss
    r["driver_cpu_s"] = ru.ru_utime + ru.ru_stime
    return r


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    os.chdir(spec["dir"])
    result = main(spec)
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
    os._exit(0)  # do not wait for stray non-daemon threads (a peer's watcher): the figures are taken
