"""poolparty.Executor as a concurrent.futures.Executor, compared with ThreadPoolExecutor (local queue)."""
from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

import poolparty
from conftest import local_worker_pids, poll_until


def square(x):
    return x * x


def sleep_then(delay, value):
    time.sleep(delay)
    return value


def raise_keyerror(key):
    raise KeyError(key)


class CustomError(Exception):
    pass


def raise_custom(message):
    raise CustomError(message)


def worker_pids(work_dir) -> list[int]:
    return local_worker_pids(work_dir)


def wait_until(predicate, timeout=8.0, interval=0.02):
    return poll_until(predicate, timeout, interval)


@pytest.fixture
def ref():
    with cf.ThreadPoolExecutor(2) as e:
        yield e


def test_is_an_executor_and_submit_returns_a_future(ex):
    assert isinstance(ex, cf.Executor)
    fut = ex.submit(square, 7)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=8) == 49
    assert fut.done() and not fut.cancelled() and fut.exception() is None
    assert ex.submit(int, "ff", base=16).result(timeout=8) == 255


def test_exception_keeps_original_type(ex, ref):
    theirs = ref.submit(raise_keyerror, "k")
    ours = ex.submit(raise_keyerror, "k")
    custom = ex.submit(raise_custom, "boom")
    for fut in (ours, theirs):
        with pytest.raises(KeyError):
            fut.result(timeout=8)
    exc = ours.exception(timeout=8)
    assert type(exc) is type(theirs.exception()) is KeyError and exc.args == ("k",)
    assert isinstance(exc.__cause__, poolparty.RemoteTraceback)
    assert "raise_keyerror" in str(exc.__cause__)
    with pytest.raises(CustomError) as info:
        custom.result(timeout=8)
    assert type(info.value) is CustomError and info.value.args == ("boom",)
    assert "raise_custom" in str(info.value.__cause__)


def test_exception_timeout_raises_timeouterror(ex):
    fut = ex.submit(sleep_then, 30, "late")
    with pytest.raises(cf.TimeoutError):
        fut.exception(timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0.2)


def test_add_done_callback_called_once(ex):
    calls = []
    lock = threading.Lock()

    def record(f):
        with lock:
            calls.append(f)

    ok = ex.submit(square, 3)
    bad = ex.submit(raise_keyerror, "x")
    ok.add_done_callback(record)
    bad.add_done_callback(record)
    cf.wait([ok, bad], timeout=8)
    assert wait_until(lambda: len(calls) == 2, timeout=2)
    time.sleep(0.1)
    assert sorted(calls, key=id) == sorted([ok, bad], key=id)
    late = []
    ok.add_done_callback(late.append)  # on a finished future: called at once, in this thread
    assert late == [ok]


def test_as_completed_yields_every_future_fastest_first(ex, ref):
    for e, slow_delay in ((ex, 30), (ref, 0.5)):
        slow = e.submit(sleep_then, slow_delay, "slow")
        fast = e.submit(sleep_then, 0.0, "fast")
        assert next(cf.as_completed([slow, fast], timeout=10)) is fast
    futures = [ex.submit(square, i) for i in range(3)]
    done = list(cf.as_completed(futures + futures[:1], timeout=10))  # duplicates are yielded once
    assert sorted(done, key=id) == sorted(futures, key=id)
    assert sorted(f.result() for f in done) == [0, 1, 4]


def test_as_completed_timeout(ex):
    slow = ex.submit(sleep_then, 30, "slow")
    with pytest.raises(cf.TimeoutError):
        list(cf.as_completed([slow], timeout=0.3))


def test_wait_first_completed(ex):
    slow = ex.submit(sleep_then, 30, "slow")
    fast = ex.submit(square, 5)
    done, not_done = cf.wait([slow, fast], timeout=8, return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    assert fast.result() == 25


def test_wait_all_completed(ex):
    futures = [ex.submit(square, i) for i in range(4)]
    done, not_done = cf.wait(futures, timeout=8, return_when=cf.ALL_COMPLETED)
    assert done == set(futures) and not not_done
    assert [f.result() for f in futures] == [0, 1, 4, 9]


def test_wait_first_exception(ex):
    slow = ex.submit(sleep_then, 30, "slow")
    bad = ex.submit(raise_keyerror, "x")
    done, not_done = cf.wait([slow, bad], timeout=8, return_when=cf.FIRST_EXCEPTION)
    assert done == {bad} and not_done == {slow}
    assert isinstance(bad.exception(), KeyError)
    # without any exception, FIRST_EXCEPTION waits for everything
    futures = [ex.submit(square, i) for i in range(2)]
    done, not_done = cf.wait(futures, timeout=8, return_when=cf.FIRST_EXCEPTION)
    assert done == set(futures) and not not_done


@pytest.mark.parametrize("chunksize", [1, 2, 10])
def test_map_is_ordered(ex, ref, chunksize):
    delays = [0.3, 0.0, 0.1, 0.0]
    values = ["a", "b", "c", "d"]
    expected = list(ref.map(sleep_then, delays, values))
    assert list(ex.map(sleep_then, delays, values, chunksize=chunksize)) == expected == values


def test_map_over_several_iterables_stops_at_the_shortest(ex, ref):
    a, b = [2, 3, 4, 5], [5, 6, 7]
    assert list(ex.map(pow, a, b)) == list(ref.map(pow, a, b)) == list(map(pow, a, b)) == [32, 729, 16384]
    assert list(ex.map(square, [])) == []


def test_map_timeout_raises_timeouterror(ex, ref):
    for e, delay in ((ex, 30), (ref, 0.8)):
        it = e.map(sleep_then, [delay], ["late"], timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(cf.TimeoutError):
            next(it)
        assert time.monotonic() - t0 < 3
    assert list(ex.map(sleep_then, [0.0, 0.0], ["a", "b"], timeout=10)) == ["a", "b"]


def test_map_propagates_the_original_exception(ex):
    it = ex.map(raise_custom, ["first"])
    with pytest.raises(CustomError, match="first"):
        next(it)


def test_shutdown_wait_finishes_everything(tmp_path):
    ex = poolparty.Executor(2, queue="local", work_root=tmp_path)
    futures = [ex.submit(sleep_then, 0.2, i) for i in range(3)]
    mapped = ex.map(square, range(3))
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result(timeout=0) for f in futures] == [0, 1, 2]
    assert list(mapped) == [0, 1, 4]
    # a job's result is in before its process has exited: give the processes a moment to go
    assert wait_until(lambda: worker_pids(ex.work_dir) == [], timeout=4)
    assert not ex.work_dir.exists()  # a clean run removes its work_dir


def test_context_manager_waits(tmp_path):
    with poolparty.Executor(2, queue="local", work_root=tmp_path) as ex:
        futures = [ex.submit(sleep_then, 0.2, i) for i in range(3)]
    assert all(f.done() for f in futures)
    assert [f.result(timeout=0) for f in futures] == [0, 1, 2]


def test_shutdown_cancel_futures(tmp_path):
    ex = poolparty.Executor(1, queue="local", work_root=tmp_path)
    running = ex.submit(sleep_then, 30, "running")
    pending = [ex.submit(sleep_then, 30, i) for i in range(3)]
    assert wait_until(lambda: len(worker_pids(ex.work_dir)) >= 1)
    t0 = time.monotonic()
    ex.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - t0 < 5
    assert all(f.cancelled() for f in pending)
    assert running.done()
    assert wait_until(lambda: worker_pids(ex.work_dir) == [], timeout=4)  # no job left running


def test_submit_after_shutdown_raises_runtimeerror(tmp_path):
    """concurrent.futures raises RuntimeError('cannot schedule new futures after shutdown')."""
    ref = cf.ThreadPoolExecutor(1)
    ref.shutdown()
    with pytest.raises(RuntimeError):
        ref.submit(square, 1)
    ex = poolparty.Executor(1, queue="local", work_root=tmp_path)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    with pytest.raises(RuntimeError):
        ex.map(square, [1])
    with pytest.raises(poolparty.PoolClosedError):
        ex.submit(square, 1)


def test_max_workers_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        cf.ThreadPoolExecutor(0)
    with pytest.raises(ValueError):
        poolparty.Executor(0, queue="local", work_root=tmp_path)


# -- RUNNING, cancel() and the stdlib's state machine ------------------------------------------------
def touch_then_sleep(marker, seconds, value):
    Path(marker).touch()
    time.sleep(seconds)
    return value


@pytest.mark.parametrize("kind", ["local", "fake-slurm", "slurm"])
def test_a_future_is_running_once_its_job_started_it_and_cannot_be_cancelled(kind, make_queue_under_test,
                                                                              tmp_path):
    """concurrent.futures: RUNNING once a worker has the call; cancel() then returns False and the call
    completes. Ours: the job's claim record in the work_dir says so (no scheduler call)."""
    q = make_queue_under_test(kind)
    started = tmp_path / "started"
    with poolparty.Executor(1, **q.pool_options(polling_interval=60)) as ex:
        fut = ex.submit(touch_then_sleep, str(started), 3, "done")
        waiting = ex.submit(square, 7)  # max_workers=1: not started while the first runs
        assert not fut.running() and not fut.done()
        assert wait_until(started.exists, timeout=60)
        polls_before = len(q.calls("squeue"))
        assert wait_until(fut.running, timeout=2)  # seen on the next result check, not the next poll
        if not q.real:  # no scheduler call said so: the work_dir did. (A real SLURM starts the job on its
            # own time, and a state change it reports makes the next polls come fast, so one may fall here)
            assert len(q.calls("squeue")) == polls_before
        assert not waiting.running()
        assert fut.cancel() is False and not fut.cancelled()
        assert waiting.cancel() is True and waiting.cancelled()
        assert fut.result(timeout=60) == "done"
        with pytest.raises(cf.CancelledError):
            waiting.result(timeout=0)


def test_running_and_cancel_match_process_pool_executor(tmp_path):
    with cf.ProcessPoolExecutor(1) as ref, poolparty.Executor(1, queue="local", work_root=tmp_path) as ex:
        for e in (ref, ex):
            fut = e.submit(touch_then_sleep, str(tmp_path / f"m-{id(e)}"), 1.5, "x")
            assert wait_until(fut.running, timeout=30)
            assert not fut.cancel() and fut.result(timeout=30) == "x"
            assert not fut.running() and fut.done()


# -- initializer -----------------------------------------------------------------------------------------
def mark_initialized(marker_dir, value):
    os.environ["POOLPARTY_TEST_INIT"] = value
    count = Path(marker_dir, f"init-{os.getpid()}")
    count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))


def initialized_value(_x=None):
    return os.environ.get("POOLPARTY_TEST_INIT"), os.getpid()


def failing_initializer():
    raise ValueError("the initializer fails")


def test_initializer_runs_once_per_job_before_its_first_call(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Executor(2, None, mark_initialized, (str(markers), "ready"), queue="local",
                            work_root=tmp_path / "w") as ex:
        submitted = [f.result(timeout=30) for f in [ex.submit(initialized_value, i) for i in range(4)]]
        mapped = list(ex.map(initialized_value, range(4), chunksize=2))
    for value, pid in submitted + mapped:
        assert value == "ready"  # set in this very process before the call
        assert (markers / f"init-{pid}").read_text() == "1"  # once per process, however many calls
    assert os.environ.get("POOLPARTY_TEST_INIT") is None


def test_initializer_arguments_are_checked_as_process_pool_executor(tmp_path):
    for make in (cf.ProcessPoolExecutor, lambda *a, **k: poolparty.Executor(*a, queue="local",
                                                                           work_root=tmp_path, **k)):
        with pytest.raises(TypeError):
            make(1, initializer="not callable")
        with pytest.raises(ValueError):
            make(1, max_tasks_per_child=0)
        with pytest.raises(TypeError):
            make(1, max_tasks_per_child=1.5)


def test_an_initializer_that_raises_breaks_the_executor_as_process_pool_executor(tmp_path):
    ref = cf.ProcessPoolExecutor(1, initializer=failing_initializer)
    ex = poolparty.Executor(1, queue="local", work_root=tmp_path, initializer=failing_initializer)
    try:
        for e in (ref, ex):
            futures = [e.submit(square, i) for i in range(3)]
            for f in futures:
                with pytest.raises(BrokenProcessPool):
                    f.result(timeout=60)
            assert wait_until(lambda: _refuses(e), timeout=5)
        assert isinstance(futures[0].exception().__cause__, ValueError)  # ours says why
        assert "the initializer fails" in str(futures[0].exception())
        assert wait_until(lambda: worker_pids(ex.work_dir) == [], timeout=8)  # no job left running
    finally:
        ref.shutdown(wait=False)
        ex.shutdown(wait=False)


def _refuses(executor) -> bool:
    try:
        executor.submit(square, 1)
    except BrokenProcessPool:
        return True
    return False


# -- results that cannot be pickled on the node ----------------------------------------------------------
class RefusesPickling:
    def __reduce__(self):
        raise ZeroDivisionError("refuses to be pickled")


def return_lock(_x):
    return threading.Lock()


def return_refusing(_x):
    return RefusesPickling()


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_an_unpicklable_result_is_the_picklers_own_error_as_process_pool_executor(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with cf.ProcessPoolExecutor(1) as ref, poolparty.Executor(1, **q.pool_options()) as ex:
        for fn, error in ((return_lock, TypeError), (return_refusing, ZeroDivisionError)):
            theirs, ours = ref.submit(fn, 0).exception(timeout=60), ex.submit(fn, 0).exception(timeout=60)
            assert type(ours) is type(theirs) is error
            assert str(ours) == str(theirs)
            assert isinstance(ours.__cause__, poolparty.RemoteTraceback)
        assert ex.engine.stats["resubmissions"] == 0


def test_a_call_cancelled_in_the_batching_window_is_never_submitted(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Executor(1, queue="local", work_root=tmp_path / "w") as ex:
        ex._calls._window.window = 5.0  # a long batching window (local: 0.02 s), so the test is not a race
        fut = ex.submit(touch_then_sleep, str(markers / "ran"), 0, "x")
        assert fut.cancel() and fut.cancelled()
        kept = ex.submit(square, 3)
        ex._calls.flush()
        assert kept.result(timeout=30) == 9
        with pytest.raises(cf.CancelledError):
            fut.result(timeout=0)
        time.sleep(0.5)
        assert not (markers / "ran").exists()
        assert ex.engine.stats["submissions"] == 1
