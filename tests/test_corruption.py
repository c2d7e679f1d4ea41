"""Corruption loses only what it touched: a damaged record of results.rec is skipped and reported, the
tasks whose results were there run again (and no others), whatever the journal said; a damaged input
record of chunks.rec is a clear error naming the chunk and its tasks, never a hang or endless retries."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import poolparty
from poolparty.cli.main import main
from poolparty.errors import CorruptWorkDirError
from poolparty.store import records
from poolparty.store.layout import BatchPaths

N = 12


def square_and_mark(args):
    x, markers = args
    n = len([p for p in os.listdir(markers) if p.startswith(f"{x}-")])
    Path(markers, f"{x}-{n}").touch(exist_ok=False)  # one marker per run of the task
    return x * x


def runs(markers: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir(markers):
        x = int(name.split("-")[0])
        out[x] = out.get(x, 0) + 1
    return out


def run_map(q, wd: Path, markers: Path) -> list[int]:
    with poolparty.Pool(max_running=2, **q.pool_options(work_dir=wd, keep_work_dir=True)) as pool:
        return pool.map(square_and_mark, [(x, str(markers)) for x in range(N)], chunksize=1)


def flip_middle_result(wd: Path) -> set[int]:
    """Flip one byte in the middle of the batch's results.rec; the tasks whose records it hit."""
    path = BatchPaths(wd / "batches" / "0001").results
    recs = list(records.read_records(path))
    assert len(recs) == N
    at = path.stat().st_size // 2
    hit = {r.key["task"] for r in recs if r.offset <= at < r.end}
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert hit and len(list(records.read_records(path))) < N  # the plain reader stops there
    return hit


def first_run(q, tmp_path: Path) -> tuple[Path, Path, set[int]]:
    wd, markers = tmp_path / "run", tmp_path / "markers"
    markers.mkdir()
    assert run_map(q, wd, markers) == [x * x for x in range(N)]
    assert runs(markers) == {x: 1 for x in range(N)}
    return wd, markers, flip_middle_result(wd)


def assert_reported(caplog, wd: Path) -> None:
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]
    assert warned, [r.getMessage() for r in caplog.records]
    assert f"{wd}/batches/0001/results.rec" in warned[0] and "recomputed" in warned[0]


@pytest.mark.parametrize("kind", ["local", "fake-slurm", "fake-sge", "fake-pbs", "fake-lsf"])
def test_a_flipped_byte_in_results_is_recomputed_on_a_rerun(kind, make_queue_under_test, tmp_path, caplog):
    q = make_queue_under_test(kind)
    wd, markers, hit = first_run(q, tmp_path)
    caplog.set_level(logging.INFO, logger="poolparty")
    assert run_map(q, wd, markers) == [x * x for x in range(N)]
    assert runs(markers) == {x: 2 if x in hit else 1 for x in range(N)}
    assert_reported(caplog, wd)
    assert any(f"chunk(s) {sorted(hit)} were stored" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert run_map(q, wd, markers) == [x * x for x in range(N)]  # a third run finds everything stored
    assert runs(markers) == {x: 2 if x in hit else 1 for x in range(N)}
    assert any("recomputed by an earlier run" in r.getMessage() for r in caplog.records)


def test_a_flipped_byte_in_results_is_recomputed_by_resume(make_queue_under_test, tmp_path, caplog):
    q = make_queue_under_test("local")
    wd, markers, hit = first_run(q, tmp_path)
    caplog.set_level(logging.INFO, logger="poolparty")
    text = CliRunner().invoke(main, ["status", str(wd)]).output
    assert "results.rec: 1 damaged region(s)" in text and f"{N - len(hit)} done" in text, text
    assert f"{len(hit)} waiting" in text and "finish it with: poolparty resume" in text, text
    out = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["resume", str(wd), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == [x * x for x in range(N)]
    assert runs(markers) == {x: 2 if x in hit else 1 for x in range(N)}
    assert_reported(caplog, wd)


def flip_chunk_record(wd: Path, chunk: int) -> None:
    path = BatchPaths(wd / "batches" / "0001").chunks
    rec = next(r for r in records.read_records(path) if r.key.get("chunk") == chunk)
    at = (rec.offset + rec.end) // 2
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_flipped_byte_in_chunks_rec_is_a_clear_error_naming_the_task(make_queue_under_test, tmp_path):
    q = make_queue_under_test("local")
    wd, markers, _ = first_run(q, tmp_path)
    results = BatchPaths(wd / "batches" / "0001").results
    results.unlink()  # every task must run again, from its input record
    flip_chunk_record(wd, 5)
    with poolparty.Pool(max_running=2, **q.pool_options(work_dir=wd, keep_work_dir=True)) as pool:
        it = pool.imap(square_and_mark, [(x, str(markers)) for x in range(N)], chunksize=1)
        out: list[object] = []
        for _ in range(N):
            try:
                out.append(next(it))
            except Exception as e:
                out.append(e)
    assert isinstance(out[5], CorruptWorkDirError), out
    text = str(out[5])
    assert "chunks.rec" in text and "chunk 5" in text and "task(s) [5]" in text
    assert [v for i, v in enumerate(out) if i != 5] == [x * x for x in range(N) if x != 5]
    assert runs(markers)[5] == 1  # the damaged chunk ran nothing


# -- the journal's "stored" is never trusted over the store ---------------------------------------------
def test_a_chunk_stored_in_the_journal_but_not_in_the_store_is_reopened_not_adopted():
    from poolparty.dispatch.adoption import ChunkRestore, plan_adoption
    from poolparty.engine.batch_state import ChunkRun
    from poolparty.resources import Resources
    from poolparty.store.journal import ChunkHistory, JournalState

    res = Resources(memory=1 << 30)
    runs = [ChunkRun(i, [i], res) for i in range(3)]
    runs[0].mark_done()
    state = JournalState(chunks={c: ChunkHistory(sub=0, element=f"9_{c}", job_id="9", resubmissions=1,
                                                 resources=res) for c in range(3)},
                         next_sub=1, stored={0, 1})
    plan = plan_adoption(state, runs, batch=1)
    assert plan.reopened == [1]
    assert ChunkRestore(1, res, 0) in plan.restored  # a fresh retry budget, submitted again
    assert [a.elements for a in plan.submissions] == [{2: "9_2"}]  # chunk 1's old job is not adopted


def test_the_latest_stored_or_reopened_event_holds_for_workers_and_replay(tmp_path):
    from poolparty.store.journal import Journal, StoredChunks, replay

    path = tmp_path / "journal.rec"
    journal = Journal(path)
    stored = StoredChunks(path)
    journal.record_stored([1, 2])
    assert 1 in stored and 2 in stored
    journal.record_reopened([1])
    assert 1 not in stored and 2 in stored  # a worker that looked before sees the reopening
    assert replay(path).stored == {2}
    journal.record_stored([1])
    assert 1 in stored and replay(path).stored == {1, 2}
    journal.close()


def test_resume_names_the_damaged_input_record(make_queue_under_test, tmp_path):
    q = make_queue_under_test("local")
    wd, _, _ = first_run(q, tmp_path)
    flip_chunk_record(wd, 7)
    result = CliRunner().invoke(main, ["resume", str(wd)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "chunks.rec is damaged at chunk 7 (task(s) [7])" in text and "fresh work_dir" in text
    assert "Traceback" not in result.output
