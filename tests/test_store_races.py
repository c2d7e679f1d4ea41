"""A chunk resubmitted while its first job was still finishing: exactly one result per task, none lost."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cloudpickle

from poolparty.store import records
from poolparty.store.inputs import BatchFiles, encode_batch
from poolparty.payload import Call, SharedFunction
from poolparty.store.results import ResultStore
from poolparty.store.trust import make_private_dir


def make_batch(tmp_path: Path, n: int, per_chunk: int | None = None) -> BatchFiles:
    """A batch of ``n`` tasks ``abs(-i)``: one chunk, or chunks of ``per_chunk`` tasks."""
    run = make_private_dir(tmp_path / "run")
    files = BatchFiles(make_private_dir(run / "batches") / "0001")
    per = per_chunk or n
    chunks = [[(i, Call(None, (-i,))) for i in range(s, min(s + per, n))] for s in range(0, n, per)]
    files.write(encode_batch(SharedFunction(abs), chunks), "map")
    return files


def run_worker(files: BatchFiles, sub: int, job: str = "B", *args: str, env: dict[str, str] | None = None) -> None:
    """``python -m poolparty.node.worker`` as a job with this job token would run it (default: chunk 0)."""
    run_env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "JOB_ID")}
    run_env.update(env or {}, POOLPARTY_JOB_ID=job)
    subprocess.run([sys.executable, "-m", "poolparty.node.worker", str(files.path), "--sub", str(sub),
                    *(args or ("--chunk", "0"))], check=True, env=run_env)


def test_second_attempt_skips_what_the_first_recorded_and_store_keeps_one(tmp_path):
    files = make_batch(tmp_path, 6)
    # attempt 0 recorded tasks 0 and 1, then was killed in the middle of task 2's record
    part0 = files.incoming / "c0.s0.part"
    with records.RecordWriter(part0) as w:
        w.append({"task": 0, "ok": True}, cloudpickle.dumps("from-attempt-0"))
        w.append({"task": 1, "ok": True}, cloudpickle.dumps("from-attempt-0"))
    with open(part0, "ab") as f:
        f.write(records.encode({"task": 2, "ok": True}, cloudpickle.dumps(2))[:-3])  # torn
    run_worker(files, sub=1)
    done1 = [r.key["task"] for r in records.read_records(files.incoming / "c0.s1.done") if "task" in r.key]
    assert done1 == [2, 3, 4, 5]  # did not run 0 and 1 again
    # the first job was in fact still alive and finishes task 2 too: a duplicate
    with records.RecordWriter(part0) as w:
        w.append({"task": 2, "ok": True}, cloudpickle.dumps("late duplicate"))
    store = ResultStore(files)
    paths = store.chunk_files(0)
    new = store.absorb(0, paths)
    assert sorted(t for t, _, _ in new) == list(range(6))
    store.close()
    tasks = [r.key["task"] for r in records.read_records(files.results)]
    assert sorted(tasks) == list(range(6))  # exactly one each
    values = {r.key["task"]: cloudpickle.loads(r.payload) for r in records.read_records(files.results)}
    assert values[0] == "from-attempt-0" and values[2] == 2  # the finished attempt's record won


def test_a_finished_twin_is_never_overwritten(tmp_path):
    files = make_batch(tmp_path, 3)
    run_worker(files, sub=0, job="A")
    first = (files.incoming / "c0.s0.done").read_bytes()
    run_worker(files, sub=0, job="A")  # the same job run again (requeued after it had finished)
    assert (files.incoming / "c0.s0.done").read_bytes() == first
    assert not (files.incoming / "c0.s0.part").exists()


def test_store_survives_a_crash_between_absorb_and_delete(tmp_path):
    files = make_batch(tmp_path, 3)
    run_worker(files, sub=0)
    store = ResultStore(files)
    store.absorb(0, store.chunk_files(0))
    store.close()  # the driver dies before deleting the worker file
    again = ResultStore(files)
    assert again.absorb(0, again.chunk_files(0)) == []  # nothing stored twice
    assert sorted(again.stored) == [0, 1, 2]


def test_twin_of_the_same_element_does_not_interleave(tmp_path):
    files = make_batch(tmp_path, 3)
    part = files.incoming / "c0.s0.part"
    holder = records.RecordWriter(part, exclusive=True)  # another run of this very job is writing
    holder.append({"runner": 0, "job": "A"})
    try:
        run_worker(files, sub=0, job="A")
        assert not (files.incoming / "c0.s0.done").exists()
    finally:
        holder.close()
