"""Array elements that run more than their own chunk (claim_chunks): fewer Python start-ups, the same
results, every chunk's output kept, nothing left in the queue, and a dead runner's chunk resubmitted."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import poolparty
from conftest import ALL_KINDS, wait_until
from poolparty.store import records
from poolparty.store.inputs import BatchFiles
from poolparty.store.journal import STORED
from poolparty.store.results import read_logs
from test_behaviour import runs_per_task, slow_square
from test_store_races import make_batch, run_worker


def square_and_pid(x):
    time.sleep(0.05)
    return x * x, os.getpid()


def shout_and_fail(x):
    print(f"task {x} speaking", flush=True)
    if x == 19:
        raise ValueError("nineteen")
    return x


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_elements_run_the_chunks_whose_elements_have_not_started(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Pool(**q.pool_options(max_running=2)) as pool:
        out = pool.map(square_and_pid, range(48), chunksize=3)  # 16 chunks on 2 slots
        stats = dict(pool.engine.stats)
        assert [v for v, _ in out] == [x * x for x in range(48)]
        runners = {pid for _, pid in out}
        assert len(runners) <= 8, f"{len(runners)} processes ran 16 chunks"
        # the left-over elements (their chunks ran elsewhere) are cancelled once the map is stored
        assert stats["cancels"] == 1 and stats["resubmissions"] == 0
        wait_until(lambda: not q.live_jobs(pool), 60, "the left-over elements to leave the queue")


def test_without_claims_each_chunk_has_its_own_process(make_queue_under_test):
    q = make_queue_under_test("local")
    with poolparty.Pool(**q.pool_options(max_running=2, claim_chunks=False)) as pool:
        out = pool.map(square_and_pid, range(24), chunksize=3)
        assert len({pid for _, pid in out}) == 8
        assert pool.engine.stats["cancels"] == 0


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_the_output_of_a_chunk_run_in_another_element_is_kept(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Pool(**q.pool_options(max_running=1, keep_work_dir=True)) as pool:
        with pytest.raises(ValueError, match="nineteen"):
            pool.map(shout_and_fail, range(20), chunksize=5)  # chunk 3 runs in chunk 0's element
        run = Path(pool.engine.work_dir)
    files = BatchFiles(run / "batches" / "0001")
    texts = {key["chunk"]: data.decode() for key, data in read_logs(files)}
    assert "task 19 speaking" in texts[3] and "task 15 speaking" in texts[3]
    assert "task 1 speaking" not in texts[3]


def test_a_runner_killed_in_a_claimed_chunk_gets_that_chunk_resubmitted(make_queue_under_test, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    q = make_queue_under_test("fake-slurm")
    # element 0 runs its chunk (0.6 s), then claims others: it is killed inside one of them
    q.cluster.add_rule("node_fail", index=0, after=1.0)
    with poolparty.Pool(**q.pool_options(max_running=2)) as pool:
        result = pool.map(slow_square, [(x, str(markers), 0.3) for x in range(16)], chunksize=2)
        stats = dict(pool.engine.stats)
    assert result == [x * x for x in range(16)]
    assert stats["resubmissions"] >= 1
    runs = runs_per_task(markers)
    assert set(runs) == set(range(16)) and sum(runs.values()) <= 16 + 2  # at most the killed task again


def run_element(files: BatchFiles, index: int, *extra: str) -> None:
    """Array element ``index`` of submission 0 (its own job token)."""
    run_worker(files, 0, f"J{index}", "--offset", "0", "--index-env", "IDX", *extra, env={"IDX": str(index)})


def done_chunks(files: BatchFiles) -> list[int]:
    return sorted(int(n[1:].split(".")[0]) for n in os.listdir(files.incoming) if n.endswith(".done"))


def test_one_element_runs_every_unclaimed_chunk_and_late_elements_run_nothing(tmp_path):
    files = make_batch(tmp_path, 4, per_chunk=1)
    run_element(files, 0, "--claim", "0-3")
    assert done_chunks(files) == [0, 1, 2, 3]
    before = {n: (files.incoming / n).read_bytes() for n in os.listdir(files.incoming)}
    run_element(files, 2, "--claim", "0-3")  # chunk 2's own element starts late: nothing to do
    assert {n: (files.incoming / n).read_bytes() for n in os.listdir(files.incoming)} == before


def test_a_chunk_the_driver_stored_is_never_run_again(tmp_path):
    files = make_batch(tmp_path, 3, per_chunk=1)
    run_element(files, 0)  # no --claim: its own chunk only
    for name in os.listdir(files.incoming):  # the driver stored chunk 0 and deleted its files
        (files.incoming / name).unlink()
    from poolparty.store.journal import Journal
    journal = Journal(files.journal)
    journal.record_stored([0])
    journal.close()
    run_element(files, 0, "--claim", "0-2")  # a requeue of element 0
    assert done_chunks(files) == [1, 2]


def test_no_claim_when_the_walltime_leaves_no_room(tmp_path):
    files = make_batch(tmp_path, 3, per_chunk=1)
    run_element(files, 0, "--claim", "0-2", "--walltime", "0.000001")
    assert done_chunks(files) == [0]


def test_a_rerun_says_which_chunks_are_stored_before_it_deletes_their_files(make_queue_under_test, tmp_path):
    """A driver killed between storing results and writing the journal's 'stored' record (CI caught it:
    the rerun dropped the chunks' files as duplicates, and live elements then claimed and ran them again)."""
    q = make_queue_under_test("local")
    options = q.pool_options(max_running=1, keep_work_dir=True, work_dir=str(tmp_path / "wd"))
    with poolparty.Pool(**options) as pool:
        assert pool.map(abs, range(-4, 0), chunksize=1) == [4, 3, 2, 1]
        files = BatchFiles(Path(pool.engine.work_dir) / "batches" / "0001")
    kept = [(r.key, r.payload) for r in records.read_records(files.journal) if r.key["ev"] != STORED]
    files.journal.unlink()
    with records.RecordWriter(files.journal) as w:  # the journal as the killed driver left it
        for key, payload in kept:
            w.append(key, payload)
    with poolparty.Pool(**options) as pool:  # the rerun: every result is in the store already
        assert pool.map(abs, range(-4, 0), chunksize=1) == [4, 3, 2, 1]
    run_element(files, 0, "--claim", "0-3")  # an element of the old submission still in the queue
    assert done_chunks(files) == []
