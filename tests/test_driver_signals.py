"""The driver dies or is interrupted mid-map: no orphaned job, and a rerun finishes what is missing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALL_KINDS, is_probe, wait_until

DRIVER = Path(__file__).parent / "drivers" / "map_driver.py"


def start_driver(q, work_dir: Path, markers: Path, n: int, seconds: float, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), "--queue", q.flavor, "--work-dir", str(work_dir), "--markers",
         str(markers), "--n", str(n), "--seconds", str(seconds), "--max-running", "2",
         "--timing", json.dumps(q.timing), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def pool_name(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline()
    assert line.startswith("POOL "), line
    return line.split()[1]


class _PoolRef:
    """What QueueUnderTest's scheduler views need: the pool's job name and work_dir."""

    def __init__(self, name: str, work_dir: Path):
        self.engine = type("E", (), {"name": name, "work_dir": work_dir})()


def record_calls(row: dict, q) -> None:
    by_cmd: dict[str, int] = {}
    for c in q.calls():
        if not is_probe(c):
            by_cmd[c["cmd"]] = by_cmd.get(c["cmd"], 0) + 1
    row.update(queue=q.kind, calls=by_cmd)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_ctrl_c_leaves_no_job_behind(kind, make_queue_under_test, tmp_path, scenario):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    work_dir = tmp_path / "wd"
    proc = start_driver(q, work_dir, markers, n=10, seconds=30)
    ref = _PoolRef(pool_name(proc), work_dir)
    wait_until(lambda: q.running_elements(ref), 90, "jobs to run")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "cancelled" in err and "KeyboardInterrupt" in err
    wait_until(lambda: not q.live_jobs(ref), 60, "no job of the pool left in the queue")
    record_calls(scenario, q)


@pytest.mark.parametrize("kind", ["local", "fake-slurm", "slurm"])
def test_interpreter_exit_by_an_exception_with_work_in_flight_cancels_it(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    work_dir = tmp_path / "wd"
    proc = start_driver(q, work_dir, markers, 10, 30, "--exit-early")
    ref = _PoolRef(pool_name(proc), work_dir)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "interpreter exit by RuntimeError" in err and "cancelled" in err
    wait_until(lambda: not q.live_jobs(ref), 60, "no job of the pool left in the queue")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_sigkill_then_rerun_adopts_and_runs_nothing_twice(kind, make_queue_under_test, tmp_path, scenario):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    work_dir = tmp_path / "wd"
    n = 8
    proc = start_driver(q, work_dir, markers, n=n, seconds=2.0)
    ref = _PoolRef(pool_name(proc), work_dir)
    # kill -9 once some tasks finished and others are running
    wait_until(lambda: len(list(markers.glob("done-*"))) >= 2 and q.running_elements(ref), 120,
               "two finished tasks and a running one")
    proc.kill()
    proc.wait()
    rerun = start_driver(q, work_dir, markers, n=n, seconds=2.0)
    assert pool_name(rerun) == ref.engine.name  # same work_dir, same job name: the old jobs are found
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1].split(" ", 1)[1])
    assert result == [x * x for x in range(n)]
    starts: dict[int, int] = {}
    for p in markers.glob("[0-9]*"):
        x = int(p.name.split("-")[0])
        starts[x] = starts.get(x, 0) + 1
    assert starts == {x: 1 for x in range(n)}, f"tasks started more than once: {starts}\n{err[-2000:]}"
    assert "adopted" in err
    record_calls(scenario, q)
    scenario["task_starts"] = sum(starts.values())
    assert not work_dir.exists() or not any(work_dir.iterdir())  # clean end: work_dir removed
