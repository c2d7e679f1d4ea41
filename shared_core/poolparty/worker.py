"""The program that runs on the compute node: ``python -m poolparty.worker BATCH_DIR ...``.

It runs the tasks of one chunk and appends each result to its own part file, flushed per task, then
renames the part file to ``.done`` (atomic). Tasks already recorded by an earlier attempt of the same
chunk (requeue, resubmission while the first job was still finishing) are not run again. It imports
only what it needs, never the dispatcher.
"""
from __future__ import annotations

import os
import pickle
import stat
import sys
from pathlib import Path

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


def dumps(value: object) -> bytes:
    """Plain pickle when it can: ~1 us per small result instead of ~25, and no cloudpickle import when the
    task did not need it. cloudpickle for what only it can pickle: lambdas, and classes or functions that
    came by value (plain pickle refuses them: their module is not importable here, or names another
    object). ``pickle.loads`` reads both."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    import cloudpickle

    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def encode_result(ok: bool, value: object, limit: int | None = None) -> tuple[bool, bytes]:
    try:
        data = dumps(value)
        if ok and limit is not None and len(data) > limit:  # max_result_size: a clear error, not the pickle
            err = ResultTooLargeError(len(data), limit, type(value).__name__)
            return False, dumps(ExceptionInfo.capture(err))
        if not ok:
            pickle.loads(data)  # e.g. a custom __init__ that unpickling cannot call
        return ok, data
    except Exception as e:  # an unpicklable result or exception is reported, not lost silently
        if ok:
            err = TypeError(f"the task's return value of type {type(value).__name__} cannot be pickled: {e}")
            return False, dumps(ExceptionInfo.capture(err))
        info = value  # an ExceptionInfo whose exception object does not pickle
        assert isinstance(info, ExceptionInfo)
        info.exc = None
        return False, dumps(info)


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
    all_ok = shared_error is None
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
            all_ok = all_ok and ok
        out.sync()
        publish(part)
    if all_ok:
        drop_quiet_log(files.incoming)
    return 0


def drop_quiet_log(incoming: Path) -> None:
    """A job whose tasks all succeeded without a word removes its own empty log file (the scheduler's
    ``-o`` file in ``incoming/``) as it ends, rather than leaving it for the driver to delete: at a wave of
    16 chunks ending together, that is 16 fewer files in the shared directory while the next wave starts.
    The driver stores no log of such a job either way."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        out, err = os.fstat(1), os.fstat(2)
        if out.st_size or (out.st_dev, out.st_ino) != (err.st_dev, err.st_ino) or not stat.S_ISREG(out.st_mode):
            return
        path = os.readlink("/proc/self/fd/1")  # Linux: the name the scheduler opened
        if os.path.dirname(os.path.realpath(path)) != str(incoming):
            return
        named = os.stat(path)
        if (named.st_dev, named.st_ino) == (out.st_dev, out.st_ino) and named.st_size == 0:
            os.unlink(path)
    except OSError:
        pass


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


USAGE = ("usage: python -m poolparty.worker BATCH_DIR --sub N (--chunk C | --offset O --index-env VAR)\n"
         "  --sub: submission number (names the part file); --chunk: the chunk (plain jobs);\n"
         "  --offset/--index-env: chunk = offset + the array index in that variable (array jobs)")


def parse_args(argv: list[str]) -> tuple[Path, int, int | None, int, str | None]:
    """The argv poolparty itself writes (argparse and what it imports would cost every job ~7 ms)."""
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    if not argv:
        raise SystemExit(USAGE)
    rest = argv[1:]
    if len(rest) % 2 or any(k not in ("--sub", "--chunk", "--offset", "--index-env") for k in rest[::2]):
        raise SystemExit(f"poolparty.worker: bad arguments {argv!r}\n{USAGE}")
    opts = dict(zip(rest[::2], rest[1::2]))
    try:
        sub = int(opts["--sub"])
        chunk = int(opts["--chunk"]) if "--chunk" in opts else None
        offset = int(opts.get("--offset", "0"))
    except (KeyError, ValueError):
        raise SystemExit(f"poolparty.worker: bad arguments {argv!r}\n{USAGE}") from None
    if chunk is None and not opts.get("--index-env"):
        raise SystemExit(f"poolparty.worker: give --chunk or --index-env\n{USAGE}")
    return Path(argv[0]), sub, chunk, offset, opts.get("--index-env")


def main(argv: list[str] | None = None) -> int:
    batch_dir, sub, chunk, offset, index_env = parse_args(sys.argv[1:] if argv is None else argv)
    files = BatchFiles(batch_dir.resolve())
    # pickles are code: load them only from directories nobody else can write
    check_private(files.path)
    check_private(files.path.parent.parent)
    check_private(files.incoming)
    if chunk is None:
        chunk = chunk_from_environment(offset, index_env or "")
    return run_chunk(files, chunk, sub)


if __name__ == "__main__":
    sys.exit(main())
