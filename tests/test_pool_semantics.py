"""poolparty.Pool as a drop-in for multiprocessing.Pool, side by side with the real one (local queue).

Task functions live at module level so that the real ``multiprocessing.Pool`` can pickle them by
reference; poolparty sends them by value (this test module is not importable on its workers).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from multiprocessing.pool import MaybeEncodingError
import os
import threading
import time
import warnings
from pathlib import Path

import cloudpickle
import pytest

import poolparty
from conftest import local_worker_pids, poll_until
from poolparty.store import records


# -- task functions (module level: the real multiprocessing.Pool pickles them by reference) ------------
def square(x):
    return x * x


def add(a, b):
    return a + b


def pid_of(_x):
    return os.getpid()


def sleep_then(arg):
    delay, value = arg
    time.sleep(delay)
    return value


def raise_keyerror(key):
    raise KeyError(key)


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"task {x} failed")
    return x * 10


class CustomError(Exception):
    """Defined in the test module: it travels by value and must come back as this very class."""


def raise_custom(message):
    raise CustomError(message)


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_locked(message):
    raise LockedError(message)


class Unpicklable:
    def __init__(self):
        self.lock = threading.Lock()


def return_unpicklable(_x):
    return Unpicklable()


def interval(_x):
    start = time.time()
    time.sleep(0.2)
    return start, time.time()


def mark_init(marker_dir, value):
    """Initializer: leaves a marker file named after the worker process and sets an env variable."""
    Path(marker_dir, f"init-{os.getpid()}").write_text(value)
    os.environ["POOLPARTY_TEST_INIT"] = value


def report_init(_x):
    return os.environ.get("POOLPARTY_TEST_INIT"), os.getpid()


# -- helpers --------------------------------------------------------------------------------------------
def worker_pids(work_dir) -> list[int]:
    return local_worker_pids(work_dir)


def wait_until(predicate, timeout=8.0, interval=0.02):
    return poll_until(predicate, timeout, interval)


@pytest.fixture(scope="module")
def mp_markers(tmp_path_factory):
    return tmp_path_factory.mktemp("mp_markers")


@pytest.fixture(scope="module")
def mp_pool(mp_markers):
    """The reference: a real multiprocessing.Pool (spawn: no fork of a process with threads)."""
    with multiprocessing.get_context("spawn").Pool(2, mark_init, (str(mp_markers), "mp")) as p:
        p.map(square, range(4), 1)  # warm up: the spawned workers import this module once
        yield p


# -- map / starmap / imap -------------------------------------------------------------------------------
@pytest.mark.parametrize("chunksize", [1, 3, None, 50])
def test_map_order_matches_multiprocessing(pool, mp_pool, chunksize):
    data = list(range(-3, 3))
    expected = mp_pool.map(square, data, chunksize)
    assert pool.map(square, data, chunksize) == expected == [x * x for x in data]


@pytest.mark.parametrize("chunksize,n_jobs", [(3, 3), (50, 1)])
def test_map_chunksize_groups_tasks_into_jobs(tmp_path, chunksize, n_jobs):
    with poolparty.Pool(2, queue="local", work_root=tmp_path, claim_chunks=False) as pool:
        pids = pool.map(pid_of, range(7), chunksize=chunksize)
    assert len(set(pids)) == n_jobs  # each job is a fresh process running one chunk (claims off)
    groups = [pids[i:i + chunksize] for i in range(0, 7, chunksize)]
    assert all(len(set(g)) == 1 for g in groups)


def test_empty_iterable_matches_multiprocessing(pool, mp_pool):
    assert pool.map(square, []) == mp_pool.map(square, []) == []
    assert pool.starmap(add, []) == mp_pool.starmap(add, []) == []
    assert list(pool.imap(square, [])) == list(mp_pool.imap(square, [])) == []
    assert list(pool.imap_unordered(square, [])) == list(mp_pool.imap_unordered(square, [])) == []
    assert pool.map_async(square, []).get(5) == []


def test_starmap_matches_multiprocessing(pool, mp_pool):
    args = [(1, 2), (3, 4), (5, 6), ("a", "b")]
    assert pool.starmap(add, args) == mp_pool.starmap(add, args) == [3, 7, 11, "ab"]
    assert pool.starmap(add, args, chunksize=4) == [3, 7, 11, "ab"]


def test_imap_is_ordered(pool, mp_pool):
    data = [(0.4, "slow first"), (0.0, "b"), (0.0, "c"), (0.1, "d")]
    expected = list(mp_pool.imap(sleep_then, data))
    assert list(pool.imap(sleep_then, data)) == expected == ["slow first", "b", "c", "d"]


def test_imap_next_timeout_raises_multiprocessing_timeouterror(pool, mp_pool):
    ours = pool.imap(sleep_then, [(1.0, "late")])
    theirs = mp_pool.imap(sleep_then, [(1.0, "late")])
    for it in (ours, theirs):
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.2)
    for it in (ours, theirs):  # the iterator is still usable after a timeout
        assert it.next(timeout=8) == "late"
        with pytest.raises(StopIteration):
            next(it)


def test_imap_unordered_returns_everything(pool, mp_pool):
    data = [(0.3, 0), (0.0, 1), (0.0, 2), (0.1, 3)]
    ours = list(pool.imap_unordered(sleep_then, data))
    theirs = list(mp_pool.imap_unordered(sleep_then, data))
    assert sorted(ours) == sorted(theirs) == [0, 1, 2, 3]
    assert len(ours) == 4


def test_map_chunksize_zero_is_rejected_like_imap(pool, mp_pool):
    with pytest.raises(ValueError):
        mp_pool.imap(square, [1], chunksize=0)
    with pytest.raises(ValueError):
        pool.imap(square, [1], chunksize=0)


# -- apply / async results ------------------------------------------------------------------------------
def test_apply_matches_multiprocessing(pool, mp_pool):
    assert pool.apply(pow, (2, 10)) == mp_pool.apply(pow, (2, 10)) == 1024
    assert pool.apply(int, ("ff",), {"base": 16}) == mp_pool.apply(int, ("ff",), {"base": 16}) == 255
    assert pool.apply(square, [7]) == 49


@pytest.mark.parametrize("which", ["poolparty", "multiprocessing"])
def test_apply_async_callback_called_once_on_success(pool, mp_pool, which):
    p = pool if which == "poolparty" else mp_pool
    ok, err = [], []
    r = p.apply_async(square, (6,), callback=ok.append, error_callback=err.append)
    assert r.get(timeout=8) == 36
    assert ok == [36] and err == []  # the callback has run by the time get() returns
    time.sleep(0.1)
    assert ok == [36] and err == []


@pytest.mark.parametrize("which", ["poolparty", "multiprocessing"])
def test_apply_async_error_callback_called_once_on_failure(pool, mp_pool, which):
    p = pool if which == "poolparty" else mp_pool
    ok, err = [], []
    r = p.apply_async(raise_keyerror, ("missing",), callback=ok.append, error_callback=err.append)
    with pytest.raises(KeyError):
        r.get(timeout=8)
    assert ok == [] and len(err) == 1
    assert type(err[0]) is KeyError and err[0].args == ("missing",)
    assert r.ready() and not r.successful()
    time.sleep(0.1)
    assert ok == [] and len(err) == 1


@pytest.mark.parametrize("which", ["poolparty", "multiprocessing"])
def test_callbacks_have_finished_when_the_result_is_ready(pool, mp_pool, which):
    """multiprocessing runs the callback before the result becomes ready: code may rely on it."""
    p = pool if which == "poolparty" else mp_pool
    seen = []

    def slow_callback(value):
        time.sleep(0.3)
        seen.append(value)

    r = p.apply_async(square, (3,), callback=slow_callback)
    r.wait(timeout=8)
    assert r.ready() and seen == [9]
    m = p.map_async(square, [1, 2], callback=slow_callback)
    assert m.get(timeout=8) == [1, 4]
    assert seen == [9, [1, 4]]


@pytest.mark.parametrize("which", ["poolparty", "multiprocessing"])
def test_map_async_and_starmap_async_callbacks(pool, mp_pool, which):
    p = pool if which == "poolparty" else mp_pool
    ok, err = [], []
    r1 = p.map_async(square, [1, 2, 3], callback=ok.append, error_callback=err.append)
    r2 = p.starmap_async(add, [(1, 1), (2, 2)], callback=ok.append, error_callback=err.append)
    r3 = p.map_async(fail_on_three, range(5), 3, callback=ok.append, error_callback=err.append)
    r4 = p.starmap_async(add, [(1, "x")], callback=ok.append, error_callback=err.append)
    assert r1.get(8) == [1, 4, 9]
    assert r2.get(8) == [2, 4]
    with pytest.raises(ValueError, match="task 3 failed"):
        r3.get(8)
    with pytest.raises(TypeError):
        r4.get(8)
    assert sorted(ok, key=len) == [[2, 4], [1, 4, 9]]
    assert sorted(type(e).__name__ for e in err) == ["TypeError", "ValueError"]
    assert r1.successful() and r2.successful() and not r3.successful() and not r4.successful()


@pytest.mark.parametrize("which", ["poolparty", "multiprocessing"])
def test_async_result_timeout_ready_successful_wait(pool, mp_pool, which):
    p = pool if which == "poolparty" else mp_pool
    r = p.apply_async(sleep_then, ((1.0, "done"),))
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.2)
    assert not r.ready()
    with pytest.raises(ValueError):
        r.successful()  # not ready yet
    t0 = time.monotonic()
    assert r.wait(timeout=0.1) is None
    assert time.monotonic() - t0 < 2
    r.wait()
    assert r.ready() and r.successful()
    assert r.get(timeout=0) == "done"


def test_async_result_timeout_on_a_slow_map(pool):
    r = pool.map_async(sleep_then, [(30, 1)])
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.3)
    assert not r.ready()


def test_raising_callback_does_not_break_the_pool(pool):
    def bad_callback(_value):
        raise RuntimeError("callback failed")

    slow = pool.map_async(sleep_then, [(0.5, "slow")])
    r = pool.map_async(square, [2], callback=bad_callback)
    assert r.get(timeout=8) == [4]
    assert slow.get(timeout=8) == ["slow"]  # the other work of the pool was not cancelled
    assert pool.map(square, [3]) == [9]


# -- lifecycle ------------------------------------------------------------------------------------------
def test_join_before_close_raises_valueerror(pool, mp_pool):
    with pytest.raises(ValueError):
        mp_pool.join()
    with pytest.raises(ValueError):
        pool.join()


def test_after_close_new_work_raises_valueerror(pool):
    ref = multiprocessing.get_context("spawn").Pool(1)
    ref.close()
    pool.close()
    for p in (pool, ref):
        for call in (lambda: p.map(square, [1]), lambda: p.apply_async(square, (1,)),
                     lambda: p.apply(square, (1,)), lambda: p.starmap(add, [(1, 2)]),
                     lambda: p.imap(square, [1]), lambda: p.imap_unordered(square, [1]),
                     lambda: p.map_async(square, [1])):
            with pytest.raises(ValueError):
                call()
    ref.join()
    with pytest.raises(poolparty.PoolClosedError):
        pool.apply_async(square, (1,))
    pool.join()


def test_close_join_waits_for_submitted_work(tmp_path):
    pool = poolparty.Pool(2, queue="local", work_root=tmp_path)
    ok = []
    m = pool.map_async(sleep_then, [(0.3, "a"), (0.3, "b"), (0.0, "c")], callback=ok.append)
    a = pool.apply_async(sleep_then, ((0.3, "d"),), callback=ok.append)
    pool.close()
    pool.join()
    assert m.ready() and a.ready()
    assert m.get(0) == ["a", "b", "c"] and a.get(0) == "d"
    assert sorted(map(str, ok)) == ["['a', 'b', 'c']", "d"]
    # a job's result is in before its process has exited: give the processes a moment to go
    assert wait_until(lambda: worker_pids(pool.work_dir) == [], timeout=4)
    assert not pool.work_dir.exists()  # a clean run leaves nothing behind


def test_terminate_kills_running_jobs(tmp_path):
    pool = poolparty.Pool(2, queue="local", work_root=tmp_path)
    r = pool.apply_async(sleep_then, ((30, "never"),))
    m = pool.map_async(sleep_then, [(30, "never")])
    assert wait_until(lambda: len(worker_pids(pool.work_dir)) == 2)
    t0 = time.monotonic()
    pool.terminate()
    assert wait_until(lambda: worker_pids(pool.work_dir) == [], timeout=4)
    pool.join()
    assert time.monotonic() - t0 < 5
    assert r.ready() and m.ready() and not r.successful() and not m.successful()
    with pytest.raises(ValueError):
        pool.apply(square, (1,))


def test_context_manager_exit_terminates(tmp_path):
    with poolparty.Pool(2, queue="local", work_root=tmp_path) as pool:
        assert isinstance(pool, poolparty.Pool)
        assert pool.map(square, [1, 2]) == [1, 4]
        pool.apply_async(sleep_then, ((30, "never"),))
        assert wait_until(lambda: len(worker_pids(pool.work_dir)) == 1)
    assert wait_until(lambda: worker_pids(pool.work_dir) == [], timeout=4)
    with pytest.raises(ValueError):
        pool.map(square, [1])
    with pytest.raises(ValueError):
        with pool:  # as multiprocessing: a pool that is not running cannot be entered
            pass


def test_processes_positional_caps_concurrency(tmp_path):
    with pytest.raises(ValueError):
        multiprocessing.get_context("spawn").Pool(0)
    with pytest.raises(ValueError):
        poolparty.Pool(0, queue="local", work_root=tmp_path)
    with poolparty.Pool(1, queue="local", work_root=tmp_path) as pool:
        assert len(pool) == 1 and pool.engine.max_running == 1
        spans = sorted(pool.map(interval, range(3), chunksize=1))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end  # never two jobs at once


def test_engine_says_busy_alive_and_stats_without_its_dispatcher(tmp_path):
    from poolparty.engine import lifecycle

    engine = poolparty.Engine(poolparty.EngineOptions(queue="local", work_root=tmp_path))
    assert engine.alive and not engine.busy and engine in lifecycle._LIVE_ENGINES
    handle = engine.submit(None, [[(0, poolparty.Call(sleep_then, ((0.5, "x"),)))]])
    assert engine.busy  # interpreter exit now would cancel this batch
    assert handle.results(timeout=30) == ["x"]
    stats = engine.stats
    assert stats["submissions"] == 1
    stats["submissions"] = 99  # a copy: read-only for the caller
    assert engine.stats["submissions"] == 1
    engine.close()
    assert not engine.alive and not engine.busy and engine not in lifecycle._LIVE_ENGINES
    assert not hasattr(engine, "dispatcher")


def test_initializer_runs_on_the_worker_before_tasks(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(2, initializer=mark_init, initargs=(str(markers), "init-ran"), queue="local",
                        work_root=tmp_path / "work") as pool:
        mapped = pool.map(report_init, range(4), chunksize=2)
        applied = pool.apply(report_init, (0,))
        imapped = list(pool.imap(report_init, range(2)))
    for value, pid in mapped + [applied] + imapped:
        assert value == "init-ran"  # set by the initializer in this very process, before the task
        assert (markers / f"init-{pid}").read_text() == "init-ran"
    assert os.environ.get("POOLPARTY_TEST_INIT") is None  # it ran on the workers, not here
    assert len({pid for _, pid in mapped}) == 2  # one job (process) per chunk, each initialized


def test_initializer_matches_multiprocessing(tmp_path, mp_pool, mp_markers):
    value, pid = mp_pool.apply(report_init, (0,))  # the reference pool has the same initializer
    assert value == "mp" and (mp_markers / f"init-{pid}").read_text() == "mp"
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(1, mark_init, (str(markers), "pp"), queue="local", work_root=tmp_path / "w") as pool:
        value, pid = pool.apply(report_init, (0,))
    assert value == "pp" and (markers / f"init-{pid}").read_text() == "pp"


# -- exceptions -----------------------------------------------------------------------------------------
def test_keyerror_keeps_type_and_has_remote_traceback(pool, mp_pool):
    with pytest.raises(KeyError) as theirs:
        mp_pool.apply(raise_keyerror, ("k",))
    with pytest.raises(KeyError) as ours:
        pool.apply(raise_keyerror, ("k",))
    assert type(ours.value) is type(theirs.value) is KeyError
    assert ours.value.args == theirs.value.args == ("k",)
    cause = ours.value.__cause__
    assert isinstance(cause, poolparty.RemoteTraceback)
    assert "raise_keyerror" in str(cause) and "KeyError" in str(cause)
    with pytest.raises(KeyError) as in_map:
        pool.map(raise_keyerror, ["m"])
    assert isinstance(in_map.value.__cause__, poolparty.RemoteTraceback)
    assert "raise_keyerror" in str(in_map.value.__cause__)


def test_custom_exception_class_comes_back_as_itself(pool):
    for run in (lambda: pool.apply(raise_custom, ("boom",)), lambda: pool.map(raise_custom, ["boom"]),
                lambda: next(pool.imap(raise_custom, ["boom"]))):
        with pytest.raises(CustomError) as info:
            run()
        assert type(info.value) is CustomError and info.value.args == ("boom",)
        assert isinstance(info.value.__cause__, poolparty.RemoteTraceback)
        assert "raise_custom" in str(info.value.__cause__)


def test_unpicklable_exception_becomes_remote_error(pool):
    with pytest.raises(poolparty.RemoteError) as info:
        pool.apply(raise_locked, ("locked up",))
    assert "LockedError" in str(info.value) and "locked up" in str(info.value)
    assert "LockedError" in info.value.type_name
    assert isinstance(info.value.__cause__, poolparty.RemoteTraceback)
    assert "raise_locked" in str(info.value.__cause__)
    with pytest.raises(poolparty.RemoteError, match="LockedError"):
        pool.map(raise_locked, ["x"])


def test_unpicklable_return_value_is_a_maybe_encoding_error_as_in_multiprocessing(pool, mp_pool):
    """multiprocessing wraps a result its worker cannot pickle in MaybeEncodingError (the pickler's own
    error in its message); ours does too, with that error as its cause."""
    for p in (mp_pool, pool):
        seen = []
        res = p.apply_async(return_unpicklable, (0,), error_callback=seen.append)
        with pytest.raises(MaybeEncodingError) as info:
            res.get(timeout=30)
        assert seen == [info.value]
        assert "Unpicklable" in info.value.value and "cannot pickle" in info.value.exc
        assert "Error sending result" in str(info.value)
        with pytest.raises(MaybeEncodingError, match="Unpicklable"):
            p.map(return_unpicklable, [0, 1])
        with pytest.raises(MaybeEncodingError):
            next(p.imap(return_unpicklable, [0]))
    assert type(info.value.__cause__) is TypeError  # ours: the pickler's own error, from the node


def test_map_with_one_failing_task(tmp_path, mp_pool):
    with pytest.raises(ValueError) as theirs:
        mp_pool.map(fail_on_three, range(6), chunksize=1)
    pool = poolparty.Pool(2, queue="local", work_root=tmp_path, keep_work_dir=True)
    with pytest.raises(ValueError) as ours:
        pool.map(fail_on_three, range(6), chunksize=1)
    assert type(ours.value) is type(theirs.value) and ours.value.args == theirs.value.args
    assert "fail_on_three" in str(ours.value.__cause__)
    pool.close()
    pool.join()
    # the other tasks were computed: their results are in the work_dir (kept when asked: keep_work_dir)
    work_dir = Path(pool.work_dir)
    assert work_dir.is_dir()
    stored = {}
    for results in work_dir.glob("batches/*/results.rec"):
        for rec in records.read_records(results):
            stored[rec.key["task"]] = (rec.key["ok"], cloudpickle.loads(rec.payload))
    assert sorted(stored) == [0, 1, 2, 3, 4, 5]
    assert {t: v for t, (ok, v) in stored.items() if ok} == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
    assert stored[3][0] is False


def test_processes_zero_or_negative_raise_valueerror_as_multiprocessing(tmp_path):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="Number of processes must be at least 1") as theirs:
            multiprocessing.get_context("spawn").Pool(processes=bad)
        with pytest.raises(ValueError, match="Number of processes must be at least 1") as ours:
            poolparty.Pool(processes=bad, queue="local", work_root=tmp_path)
        assert str(ours.value) == str(theirs.value)
    assert not any(tmp_path.iterdir())  # refused before any run directory was made


def test_a_running_pool_dropped_without_close_warns_and_terminates_its_jobs(tmp_path):
    """multiprocessing.Pool (3.8+): ResourceWarning "unclosed running multiprocessing pool" when a
    running pool is garbage-collected; its jobs are cancelled all the same."""
    import gc

    ref = multiprocessing.get_context("fork").Pool(1)
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del ref
        gc.collect()
    pool = poolparty.Pool(1, queue="local", work_root=tmp_path)
    pool.apply_async(sleep_then, ((30, "never"),))
    work_dir = pool.work_dir
    assert wait_until(lambda: worker_pids(work_dir), timeout=30)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        del pool
        gc.collect()
    messages = [str(w.message) for w in seen if w.category is ResourceWarning]
    assert len(messages) == 1 and messages[0].startswith("unclosed running multiprocessing pool <poolparty.Pool")
    del seen  # the warning's source is the pool: once it goes, the pool does
    gc.collect()
    assert wait_until(lambda: worker_pids(work_dir) == [], timeout=10)
    closed = poolparty.Pool(1, queue="local", work_root=tmp_path)
    closed.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # a closed pool is not a leak
        del closed
        gc.collect()


def fail_initializer():
    raise ValueError("the initializer fails")


def test_initializer_runs_once_per_job_for_single_calls(tmp_path):
    """One mechanism for map and apply: the initializer travels once per batch and runs once per job
    before its first task, however many calls the job runs (not once per call)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(1, initializer=count_init, initargs=(str(markers),), queue="local",
                        work_root=tmp_path / "w") as pool:
        results = [r.get(timeout=60) for r in [pool.apply_async(report_init, (i,)) for i in range(4)]]
    for value, pid in results:
        assert value == "counted" and (markers / f"init-{pid}").read_text() == "1"
    assert len({pid for _, pid in results}) < 4  # a job ran several calls (it claimed its array's next)


def count_init(marker_dir):
    os.environ["POOLPARTY_TEST_INIT"] = "counted"
    count = Path(marker_dir, f"init-{os.getpid()}")
    count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))


def test_an_initializer_that_raises_fails_each_task_with_its_error(tmp_path):
    """multiprocessing.Pool restarts a worker whose initializer raised, forever (the call hangs); ours
    fails each task with the initializer's own exception instead, and resubmits nothing."""
    with poolparty.Pool(1, initializer=fail_initializer, queue="local", work_root=tmp_path) as pool:
        with pytest.raises(ValueError, match="the initializer fails"):
            pool.apply(square, (2,))
        with pytest.raises(ValueError, match="the initializer fails"):
            pool.map(square, range(3))
        assert pool.engine.stats["resubmissions"] == 0
