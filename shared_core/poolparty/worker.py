"""The program that runs on the compute node: ``python -m poolparty.worker BATCH_DIR ...``.

It runs the tasks of one chunk and appends each result to its own part file, flushed per task, then
renames the part file to ``.done`` (atomic). Tasks already recorded by an earlier attempt of the same
chunk (requeue, resubmission while the first job was still finishing) are not run again. It imports
only what it needs, never the dispatcher.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cloudpickle

from . import record_log
from .batch_files import BatchFiles
from .payload import ExceptionInfo, run_payload
from .result_size import ResultTooLargeError, read_limit
from .workdir import check_private


def recorded_tasks(files: BatchFiles, chunk: int) -> set[int]:
    """Task indices that any attempt of this chunk has already recorded."""
    done: set[int] = set()
    prefix = f"c{chunk}."
    try:
        names = os.listdir(files.incoming)
    except FileNotFoundError:
        return done
    for name in names:
        if name.startswith(prefix) and (name.endswith(".part") or name.endswith(".done")):
            done.update(r.key["task"] for r in record_log.read_records(files.incoming / name))
    return done


def encode_result(ok: bool, value: object, limit: int | None = None) -> tuple[bool, bytes]:
    try:
        data = cloudpickle.dumps(value)
        if ok and limit is not None and len(data) > limit:  # max_result_size: a clear error, not the pickle
            err = ResultTooLargeError(len(data), limit, type(value).__name__)
            return False, cloudpickle.dumps(ExceptionInfo.capture(err))
        if not ok:
            cloudpickle.loads(data)  # e.g. a custom __init__ that unpickling cannot call
        return ok, data
    except Exception as e:  # an unpicklable result or exception is reported, not lost silently
        if ok:
            err = TypeError(f"the task's return value of type {type(value).__name__} cannot be pickled: {e}")
            return False, cloudpickle.dumps(ExceptionInfo.capture(err))
        info = value  # an ExceptionInfo whose exception object does not pickle
        assert isinstance(info, ExceptionInfo)
        info.exc = None
        return False, cloudpickle.dumps(info)


def run_chunk(files: BatchFiles, chunk: int, sub: int) -> int:
    indices, payloads = files.read_chunk(chunk)
    part = files.incoming / f"{files.part_name(chunk, sub, job_token())}.part"
    shared_error: ExceptionInfo | None = None
    limit = read_limit(files.path.parent.parent)
    try:
        shared = files.read_shared()
        if shared is not None and shared.initializer is not None:
            shared.initializer(*shared.initargs)
    except Exception as e:  # e.g. ModuleNotFoundError: every task reports it, nothing hangs
        shared, shared_error = None, ExceptionInfo.capture(e)
    try:  # a twin of this very element (a duplicated submission) is writing: leave it the work
        out = record_log.RecordWriter(part, exclusive=True)
    except BlockingIOError:
        print(f"poolparty.worker: {part.name} is being written by another instance; exiting", file=sys.stderr)
        return 0
    with out:
        done = recorded_tasks(files, chunk)
        for index, item in zip(indices, payloads):
            if index in done:
                continue
            if shared_error is not None:
                ok, data = encode_result(False, shared_error)
            else:
                try:
                    ok, data = encode_result(True, run_payload(item, shared), limit)
                except Exception as e:
                    ok, data = encode_result(False, ExceptionInfo.capture(e))
            sys.stdout.flush()
            sys.stderr.flush()
            out.append({"task": index, "ok": ok}, data)
        out.sync()
        publish(part)
    return 0


def publish(part: Path) -> None:
    """``.part`` -> ``.done`` without ever replacing a ``.done`` another run of this job wrote."""
    done = part.with_suffix(".done")
    try:
        os.link(part, done)
    except FileExistsError:
        pass  # an earlier run of this very job finished: its records stand
    except FileNotFoundError:
        return  # the driver already stored this chunk from another attempt and removed our file
    except OSError:  # a filesystem without hard links
        if not done.exists():
            os.replace(part, done)
            return
    part.unlink(missing_ok=True)


def job_token() -> str:
    """The scheduler's id of this job: stable when the scheduler requeues it, distinct for a duplicate."""
    for var in ("SLURM_JOB_ID", "JOB_ID", "POOLPARTY_JOB_ID"):
        value = os.environ.get(var, "")
        if value:
            return "".join(ch if ch.isalnum() else "_" for ch in value)
    return f"p{os.getpid()}"


def chunk_from_environment(offset: int, index_env: str) -> int:
    raw = os.environ.get(index_env)
    if raw is None or not raw.isdigit():
        raise SystemExit(f"poolparty.worker: environment variable {index_env}={raw!r} is not an array index")
    return offset + int(raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="poolparty.worker", description=__doc__)
    p.add_argument("batch_dir", type=Path)
    p.add_argument("--sub", type=int, required=True, help="submission number (names the part file)")
    p.add_argument("--chunk", type=int, help="chunk to run (plain jobs)")
    p.add_argument("--offset", type=int, default=0, help="chunk = offset + array index (array jobs)")
    p.add_argument("--index-env", help="environment variable holding the array index")
    a = p.parse_args(argv)
    files = BatchFiles(a.batch_dir.resolve())
    # pickles are code: load them only from directories nobody else can write
    check_private(files.path)
    check_private(files.path.parent.parent)
    check_private(files.incoming)
    chunk = a.chunk if a.chunk is not None else chunk_from_environment(a.offset, a.index_env)
    return run_chunk(files, chunk, a.sub)


if __name__ == "__main__":
    sys.exit(main())
