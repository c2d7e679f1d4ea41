"""Warm elements (``linger``): an element that ran out of chunks runs chunks of later batches of the
same resource shape that the driver offers it, instead of a new job; never another shape, never a chunk
twice; it leaves when idle ``linger`` seconds; a warm element lost inside a borrowed chunk gets that
chunk resubmitted; terminate and close leave nothing in the queue."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import poolparty
from conftest import SUBMIT_COMMAND, wait_until
from poolparty.dispatch.warm import offer_size, shape_of, withdraw_due
from poolparty.resources import Resources
from poolparty.store.warm import Advert, Offer, live_adverts, read_offers, write_offer
from test_chunk_claims import done_chunks
from test_store_races import make_batch, run_worker


def square_and_pid(x):
    time.sleep(0.05)
    return x * x, os.getpid()


def slow_square_and_pid(x, seconds):
    time.sleep(seconds)
    return x * x, os.getpid()


def live_after_close(q, pool):
    """``q.live_jobs(pool)`` that still works once the pool has closed (its work_dir is then released)."""
    from conftest import local_worker_pids

    if q.flavor == "local":
        run = pool.engine.work_dir
        return lambda: local_worker_pids(run)
    return lambda: q.live_jobs(pool)


def submissions(q, pool) -> int:
    """Jobs submitted: sbatch/qsub calls on a scheduler (fake or real), the engine's count locally."""
    if q.flavor != "local":
        return len(q.calls(SUBMIT_COMMAND[q.flavor]))
    return pool.engine.stats["submissions"]


# -- the driver's pure decisions -----------------------------------------------------------------------
def test_a_shape_is_the_rendered_resources():
    assert shape_of(Resources(memory="1GB")) == shape_of(Resources(memory="1GB"))
    assert shape_of(Resources(memory="1GB")) != shape_of(Resources(memory="2GB"))
    assert shape_of(Resources()) != shape_of(Resources(cpus=2))


def test_one_chunk_is_offered_per_idle_warm_element_and_offers_close_when_claimed_or_late():
    assert offer_size(5, 2) == 2 and offer_size(1, 4) == 1 and offer_size(3, 0) == 0
    assert withdraw_due(10.0, 10.2, unclaimed=0)  # everything claimed: nothing to wait for
    assert not withdraw_due(10.0, 10.2, unclaimed=1, wait=1.0)
    assert withdraw_due(10.0, 11.0, unclaimed=1, wait=1.0)


# -- the element --------------------------------------------------------------------------------------
def make_two_batches(tmp_path: Path):
    """Batch 1 (4 chunks) and batch 2 (4 chunks) of one run, both ``abs(-i)``."""
    first = make_batch(tmp_path, 4, per_chunk=1)
    from poolparty.payload import Call, SharedFunction
    from poolparty.store.inputs import BatchFiles, encode_batch

    second = BatchFiles(first.run / "batches" / "0002")
    second.write(encode_batch(SharedFunction(abs), [[(i, Call(None, (-i,)))] for i in range(4)]), "map")
    from poolparty.store.warm import make_warm_dir

    make_warm_dir(first.run)
    return first, second


def test_an_element_runs_offered_chunks_of_its_shape_only_and_leaves_when_idle(tmp_path):
    first, second = make_two_batches(tmp_path)
    write_offer(first.run, "shapeB", Offer(2, 5, [0, 1]))  # another shape: never taken
    write_offer(first.run, "shapeA", Offer(2, 3, [2, 3]))
    t0 = time.monotonic()
    run_worker(first, 0, "J0", "--offset", "0", "--index-env", "IDX", "--linger", "1", "--shape", "shapeA",
               env={"IDX": "0"})
    took = time.monotonic() - t0
    assert done_chunks(first) == [0]
    assert sorted(os.listdir(second.incoming)) == ["c2.s3.done", "c3.s3.done"]  # its shape's offer only
    assert 1.0 <= took < 15, took  # it waited ~linger idle seconds after the last chunk, then left
    assert os.listdir(first.run / "warm") == ["o.shapeA.2.3", "o.shapeB.2.5"]  # its advert is gone


def test_an_element_leaves_at_once_when_the_run_ends(tmp_path):
    first, _ = make_two_batches(tmp_path)
    import shutil

    shutil.rmtree(first.run / "warm")  # what the driver removes when the run ends
    t0 = time.monotonic()
    run_worker(first, 0, "J0", "--offset", "0", "--index-env", "IDX", "--linger", "30", "--shape", "s",
               env={"IDX": "0"})
    assert time.monotonic() - t0 < 15


def test_adverts_count_only_while_their_heartbeat_is_fresh(tmp_path):
    from poolparty.store.warm import make_warm_dir

    make_warm_dir(tmp_path)
    a = Advert(tmp_path, "s1", "J7")
    assert a.refresh()
    assert live_adverts(tmp_path, "s1", fresh=2.0) == 1 and live_adverts(tmp_path, "s2", fresh=2.0) == 0
    assert live_adverts(tmp_path, "s1", fresh=2.0, now=time.time() + 5) == 0
    a.remove()
    assert live_adverts(tmp_path, "s1", fresh=2.0) == 0
    assert read_offers(tmp_path / "nowhere", "s1") is None


# -- through the engine -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "fake-slurm", "slurm", "sge"])
def test_a_warm_element_of_batch_1_runs_batch_2_without_a_submission(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Pool(**q.pool_options(max_running=2, linger=10)) as pool:
        live = live_after_close(q, pool)
        first = pool.map(square_and_pid, range(2), chunksize=1)
        assert submissions(q, pool) == 1
        second = pool.map(square_and_pid, range(10, 12), chunksize=1)
        third = pool.map(square_and_pid, range(20, 22), chunksize=1)
        assert submissions(q, pool) == 1  # batches 2 and 3 ran in batch 1's elements
        assert [v for v, _ in second] == [100, 121] and [v for v, _ in third] == [400, 441]
        assert {p for _, p in second + third} <= {p for _, p in first}
        assert pool.engine.stats["resubmissions"] == 0
    wait_until(lambda: not live(), 30, "the warm elements to leave with the pool")


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_a_chunk_of_another_shape_is_never_taken(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Pool(**q.pool_options(max_running=2, linger=10)) as pool:
        first = pool.map(square_and_pid, range(2), chunksize=1)
        other = pool.map(square_and_pid, range(2), chunksize=1, resources={"cpus": 2})
        assert submissions(q, pool) == 2
        assert not {p for _, p in other} & {p for _, p in first}


def test_a_warm_element_leaves_after_linger_idle_seconds(make_queue_under_test):
    q = make_queue_under_test("local")
    with poolparty.Pool(**q.pool_options(max_running=2, linger=2)) as pool:
        pool.map(square_and_pid, range(2), chunksize=1)
        assert q.live_jobs(pool), "no element lingered"
        t0 = time.monotonic()
        wait_until(lambda: not q.live_jobs(pool), 30, "the idle warm elements to leave")
        assert time.monotonic() - t0 < 2 + 10
        # the pool still works: the next map is submitted as usual
        assert [v for v, _ in pool.map(square_and_pid, range(2), chunksize=1)] == [0, 1]
        assert pool.engine.stats["submissions"] == 2


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_a_lost_warm_element_gets_its_borrowed_chunk_resubmitted(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Pool(**q.pool_options(max_running=1, linger=30, max_resubmissions=2)) as pool:
        (_, pid), = pool.map(square_and_pid, [3], chunksize=1)
        (element,) = q.running_elements(pool)
        result = pool.starmap_async(slow_square_and_pid, [(7, 4.0)], chunksize=1)
        time.sleep(2.0)  # the warm element claimed the chunk and is inside it
        assert pool.engine.stats["submissions"] == 1
        q.kill_behind_back(element)
        ((value, runner),) = result.get(timeout=120)
        assert value == 49 and runner != pid
        assert pool.engine.stats["resubmissions"] == 1


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
@pytest.mark.parametrize("end", ["terminate", "close"])
def test_terminate_and_close_leave_no_lingering_element(kind, end, make_queue_under_test):
    q = make_queue_under_test(kind)
    pool = poolparty.Pool(**q.pool_options(max_running=2, linger=300))
    live = live_after_close(q, pool)
    pool.map(square_and_pid, range(2), chunksize=1)
    assert live(), "no element lingered"
    getattr(pool, end)()
    pool.join()
    wait_until(lambda: not live(), 10, "the warm elements to be cancelled")
