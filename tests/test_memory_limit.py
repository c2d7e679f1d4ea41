"""A task's MemoryError under the job's address-space limit (SGE's h_vmem is RLIMIT_AS): the chunk comes
back with more memory, as a SLURM OUT_OF_MEMORY does; without such a limit it stays the task's error.
The real SGE's case is in tests/test_real_wlm.py."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import poolparty
from poolparty.node.memory_limit import is_over_memory_limit
from poolparty.retry import FailureClass, classify_worker_end
from poolparty.store import records
from poolparty.store.incoming import END_OUT_OF_MEMORY, record_end, recorded_end, recorded_tasks
from poolparty.store.layout import part_path
from test_behaviour import runs_per_task


def allocate(args):
    """Touches a marker per run, then allocates ``mb`` MiB and returns that number."""
    mb, marker_dir = args
    Path(marker_dir, f"{mb}-{uuid.uuid4().hex}").touch()
    block = bytearray(mb * 1024 * 1024)
    return len(block) // 2**20


def raise_memory_error(_):
    raise MemoryError("the task's own")


@pytest.fixture
def markers(tmp_path):
    d = tmp_path / "markers"
    d.mkdir()
    return d


class NotEnoughRoom(MemoryError):
    pass


@pytest.mark.parametrize("error, limit, over", [
    (MemoryError(), 200 * 2**20, True),
    (NotEnoughRoom(), 2**30, True),  # a subclass is a MemoryError too
    (MemoryError(), None, False),  # no address-space limit: the node is full, or the task raised it
    (ValueError("no"), 200 * 2**20, False),
    (KeyboardInterrupt(), 200 * 2**20, False),
])
def test_a_memory_error_is_the_jobs_limit_only_under_an_address_space_limit(error, limit, over):
    assert is_over_memory_limit(error, limit) is over


@pytest.mark.parametrize("scheduler, end, told", [
    (FailureClass.WORKER_CRASH, END_OUT_OF_MEMORY, FailureClass.OUT_OF_MEMORY),  # SGE: failed 0, exit 1
    (FailureClass.VANISHED, END_OUT_OF_MEMORY, FailureClass.OUT_OF_MEMORY),  # qacct had not said yet
    (FailureClass.WORKER_CRASH, None, FailureClass.WORKER_CRASH),
    (FailureClass.TIMEOUT, END_OUT_OF_MEMORY, FailureClass.TIMEOUT),  # the scheduler knew better
    (FailureClass.WORKER_CRASH, "a word of a later version", FailureClass.WORKER_CRASH),
])
def test_the_workers_recorded_end_explains_an_end_the_scheduler_could_not(scheduler, end, told):
    assert classify_worker_end(scheduler, end) is told


def test_a_recorded_end_is_read_back_and_leaves_the_finished_tasks_in_place(tmp_path):
    part = part_path(tmp_path, 3, 1)
    with records.RecordWriter(part) as out:
        out.append({"runner": 3, "job": "7"})
        out.append({"task": 30, "ok": True}, b"x")
        assert recorded_end(tmp_path, 3, 1) is None
        record_end(out, END_OUT_OF_MEMORY, "task 31 raised MemoryError")
    assert recorded_end(tmp_path, 3, 1) == (END_OUT_OF_MEMORY, "task 31 raised MemoryError")
    assert recorded_end(tmp_path, 3, 2) is None  # another submission's part
    assert recorded_tasks(tmp_path, 3) == {30}


def test_a_task_over_h_vmem_comes_back_with_more_memory_and_the_chunks_finished_tasks_kept(
        make_queue_under_test, markers):
    """The fake SGE sets h_vmem as RLIMIT_AS, as sge_execd does: the third task of the chunk raises
    MemoryError at 200 MiB; the chunk is resubmitted with 400 MiB, where it fits, and the two tasks
    that had finished are neither lost nor run again."""
    q = make_queue_under_test("fake-sge")
    with poolparty.Pool(**q.pool_options(memory="200MB", max_running=1)) as pool:
        result = pool.map(allocate, [(1, str(markers)), (2, str(markers)), (300, str(markers))], chunksize=3)
        stats = dict(pool.engine.stats)
    assert result == [1, 2, 300]
    limits = [a for c in q.calls("qsub") for a in c["argv"] if "h_vmem=" in a]
    assert limits == ["h_vmem=200M", "h_vmem=400M"], limits
    assert stats["resubmissions"] == 1
    assert runs_per_task(markers) == {1: 1, 2: 1, 300: 2}


def test_over_h_vmem_at_every_size_gives_up_after_max_resubmissions(make_queue_under_test, markers):
    q = make_queue_under_test("fake-sge")
    with poolparty.Pool(**q.pool_options(memory="100MB", max_resubmissions=1)) as pool:
        with pytest.raises(poolparty.RetryLimitExceeded, match="out of memory"):
            pool.map(allocate, [(1000, str(markers))])
    limits = [a for c in q.calls("qsub") for a in c["argv"] if "h_vmem=" in a]
    assert limits == ["h_vmem=100M", "h_vmem=200M"], limits


def test_a_memory_error_without_an_address_space_limit_is_the_tasks_own(make_queue_under_test):
    q = make_queue_under_test("fake-sge")  # no memory asked: no h_vmem, no RLIMIT_AS
    with poolparty.Pool(**q.pool_options()) as pool:
        with pytest.raises(MemoryError, match="the task's own"):
            pool.map(raise_memory_error, [1])
        assert pool.engine.stats["resubmissions"] == 0
