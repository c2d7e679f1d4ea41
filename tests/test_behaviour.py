"""One behavioural suite for every queue: local, the fake schedulers, and the real SLURM and SGE."""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

import poolparty
from conftest import ALL_KINDS, CLUSTER_KINDS, SUBMIT_COMMAND, measure, pool_status_calls, wait_until


def record_and_square(args):
    x, marker_dir = args
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    return x * x


def slow_square(args):
    x, marker_dir, seconds = args
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    time.sleep(seconds)
    return x * x


def fail_on_five(args):
    x, marker_dir = args
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    if x == 5:
        raise ValueError(f"bad input {x}")
    return x


def runs_per_task(marker_dir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for p in marker_dir.iterdir():
        x = int(p.name.split("-")[0])
        counts[x] = counts.get(x, 0) + 1
    return counts


def submissions(q) -> int:
    return len(q.calls(SUBMIT_COMMAND[q.flavor]))


class RunningSampler(threading.Thread):
    """Samples the scheduler's own count of the pool's running jobs."""

    def __init__(self, q, pool):
        super().__init__(daemon=True)
        self.q, self.pool, self.peak, self.samples = q, pool, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.q.running_jobs(self.pool))
                self.samples += 1
            except Exception:
                pass
            self.stop.wait(0.2)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_map_is_complete_ordered_and_throttled(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    n = 60
    with poolparty.Pool(max_running=3, **q.pool_options()) as pool:
        sampler = RunningSampler(q, pool)
        sampler.start()
        result = pool.map(slow_square, [(x, str(markers), 0.05) for x in range(n)], chunksize=4)
        sampler.stop.set()
        sampler.join()
        stats = dict(pool.engine.stats)
    assert result == [x * x for x in range(n)]
    assert runs_per_task(markers) == {x: 1 for x in range(n)}
    assert sampler.samples > 0 and sampler.peak <= 3
    assert stats["submissions"] == 1 and stats["resubmissions"] == 0
    if q.flavor != "local":
        assert submissions(q) == 1  # one array for the whole map
        assert len(pool_status_calls(q)) == stats["polls"]  # one query per poll, never one per task


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_user_exception_is_not_resubmitted_and_keeps_its_type(kind, make_queue_under_test, tmp_path, scenario):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(max_running=4, **q.pool_options()) as pool:
        with pytest.raises(ValueError, match="bad input 5") as err:
            pool.map(fail_on_five, [(x, str(markers)) for x in range(10)], chunksize=2)
        stats = dict(pool.engine.stats)
        measure(scenario, q, pool)
        kept = pool.work_dir
    assert isinstance(err.value.__cause__, poolparty.RemoteTraceback)
    assert "fail_on_five" in str(err.value.__cause__)
    assert runs_per_task(markers) == {x: 1 for x in range(10)}  # every task ran once, none again
    assert stats["resubmissions"] == 0
    assert not kept.exists()  # the failure reached the caller: nothing is left to resume (test_kept_work_dirs.py)


@pytest.mark.parametrize("kind", CLUSTER_KINDS + ["local"])
def test_job_cancelled_behind_the_pools_back_is_resubmitted(kind, make_queue_under_test, tmp_path, scenario):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        # long enough that the job is still running when it is killed, even on a loaded machine
        async_result = pool.map_async(slow_square, [(x, str(markers), 6.0) for x in range(4)], chunksize=1)
        # a task has started inside a job: the kill lands while that job is computing, not while it starts
        running = wait_until(lambda: list(markers.iterdir()) and q.running_elements(pool), 60, "a running job")
        q.kill_behind_back(running[0])
        assert async_result.get(timeout=240) == [x * x for x in range(4)]
        stats = dict(pool.engine.stats)
        measure(scenario, q, pool)
    assert stats["resubmissions"] >= 1
    assert set(runs_per_task(markers)) == set(range(4))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_shell_commands_run_and_report_exit_status(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    out = tmp_path / "out.txt"
    engine = poolparty.Engine(poolparty.EngineOptions(**q.pool_options()))
    try:
        ok = engine.submit(None, [[(0, poolparty.ShellCommand(f"echo hello > {out}"))],
                                  [(1, poolparty.ShellCommand(["sh", "-c", "exit 3"]))]])
        assert ok.wait(120)
        assert ok.outcome(0) == (True, 0)
        good, exc = ok.outcome(1)
        assert not good and isinstance(exc, poolparty.CommandFailed) and exc.returncode == 3
        assert out.read_text().strip() == "hello"
    finally:
        engine.terminate("test end")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_executor_futures(kind, make_queue_under_test):
    from concurrent.futures import as_completed
    q = make_queue_under_test(kind)
    with poolparty.Executor(max_workers=4, **q.pool_options()) as ex:
        futures = [ex.submit(pow, 2, i) for i in range(8)]
        assert sorted(f.result(timeout=120) for f in as_completed(futures, timeout=120)) == [2**i for i in range(8)]
        stats = dict(ex.engine.stats)
    assert stats["submissions"] <= 2  # submitted together: coalesced into one array (two if split by timing)


@pytest.mark.parametrize("kind", ["local", "fake-slurm", "fake-sge", "fake-pbs", "fake-lsf"])
def test_cancelling_one_batch_leaves_the_pool_usable(kind, make_queue_under_test, tmp_path):
    from concurrent.futures import CancelledError
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    engine = poolparty.Engine(poolparty.EngineOptions(**q.pool_options(max_running=2)))
    try:
        from poolparty.payload import Call, SharedFunction
        slow = engine.submit(SharedFunction(slow_square), [[(i, Call(None, ((i, str(markers), 30),)))] for i in range(4)])
        wait_until(lambda: list(markers.iterdir()), 60, "a running task")
        engine.cancel(slow)
        assert slow.wait(60)
        assert isinstance(slow.error, CancelledError)
        quick = engine.submit(SharedFunction(abs), [[(0, Call(None, (-5,)))]])
        assert quick.results(timeout=60) == [5]
        wait_until(lambda: not q.running_elements(type("P", (), {"engine": engine})()), 30, "cancelled jobs gone")
    finally:
        engine.terminate("test end")
