"""A parameter sweep as a Prefect flow whose task runs are cluster jobs.

Every point of a (damping x noise) grid is one task run; the grid leaves as one array of jobs
(several points per job), a summary task depends on all of them, and a flaky "fetch" step is
retried by Prefect inside its job. Every task run, its states and its logs show up in the Prefect
UI, although the jobs themselves never talk to the Prefect API (relay mode, the default).

    pip install prefect-poolparty
    python examples/prefect/parameter_sweep.py                       # local processes
    POOLPARTY_QUEUE=slurm python examples/prefect/parameter_sweep.py # SLURM (run from a shared dir)

Without PREFECT_API_URL, Prefect starts a temporary local server for the run.
"""
from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.utilities.annotations import unmapped

from prefect_poolparty import PoolPartyTaskRunner


@task(retries=2, retry_delay_seconds=1)
def fetch_settings(scratch: str) -> dict:
    """Stands in for a download that fails now and then: the first attempt fails, Prefect retries."""
    marker = Path(scratch) / "fetched-once"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise ConnectionError("mirror not reachable (simulated); Prefect retries this task in its job")
    return {"steps": 2000, "seed": 42}


@task(tags=["poolparty:memory=1GB"])
def simulate(settings: dict, damping: float, noise: float) -> dict:
    """A damped random walk; the score is how close it ends to zero, on average."""
    rng = random.Random(f"{settings['seed']}-{damping}-{noise}")
    x, total = 1.0, 0.0
    for _ in range(settings["steps"]):
        x = (1 - damping) * x + rng.gauss(0, noise)
        total += abs(x)
    return {"damping": damping, "noise": noise, "score": total / settings["steps"]}


@task
def summarize(results: list[dict]) -> dict:
    best = min(results, key=lambda r: r["score"])
    get_run_logger().info("best of %d: damping=%s noise=%s score=%.4f", len(results), best["damping"],
                          best["noise"], best["score"])
    return {"points": len(results), "best": best}


@flow(task_runner=PoolPartyTaskRunner(max_running=8, walltime="0:10:00"), log_prints=True)
def parameter_sweep(scratch: str, n_damping: int = 10, n_noise: int = 10) -> dict:
    settings = fetch_settings.submit(scratch)
    grid = [(round(0.05 + 0.9 * i / max(1, n_damping - 1), 3), round(0.1 * 2 ** (j / 3), 3))
            for i in range(n_damping) for j in range(n_noise)]
    runs = simulate.map(unmapped(settings), [d for d, _ in grid], [n for _, n in grid])
    summary = summarize.submit(runs).result()
    print(f"swept {summary['points']} points; best damping {summary['best']['damping']}, "
          f"noise {summary['best']['noise']} (score {summary['best']['score']:.4f})")
    return summary


def main(argv: list[str], n_damping: int = 10, n_noise: int = 10) -> dict:
    """``parameter_sweep.py [SCRATCH]``: without SCRATCH, a temporary directory in the current one (the
    jobs must see it: on a cluster, run from a shared directory), removed at the end."""
    if argv:
        return parameter_sweep(str(Path(argv[0]).resolve()), n_damping, n_noise)
    with tempfile.TemporaryDirectory(prefix=".sweep-scratch-", dir=".") as scratch:
        return parameter_sweep(str(Path(scratch).resolve()), n_damping, n_noise)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
