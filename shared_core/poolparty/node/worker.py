"""The program that runs on the compute node: ``python -m poolparty.node.worker BATCH_DIR ...``.

It runs the tasks of one chunk and appends each result to its own part file, flushed per task, then
renames the part file to ``.done`` (atomic). Tasks already recorded by an earlier attempt of the same
chunk (requeue, resubmission while the first job was still finishing) are not run again. A task that
runs out of the job's address-space limit stops the chunk, recorded as out of memory (see
:mod:`poolparty.node.memory_limit`), and the job. It reads and
writes the work_dir only through :mod:`poolparty.store`, and imports only what it needs, never the
dispatcher or the engine.
"""
from __future__ import annotations

import os
import pickle
import stat
import sys
import time
from pathlib import Path
from typing import NamedTuple

from poolparty import checkpoint
from poolparty.errors import CorruptWorkDirError
from poolparty.node.walltime import TaskState, install_warning, walltime_warned
from poolparty.node.capture import OutputCapture
from poolparty.node.memory_limit import MemoryLimitReached, address_space_limit, is_over_memory_limit
from poolparty.queues.arrays import parse_indices
from poolparty.payload import ExceptionInfo, run_payload
from poolparty.store import records
from poolparty.store.claims import claim, is_claimed
from poolparty.store.incoming import END_OUT_OF_MEMORY, END_WALLTIME_STOP, publish, published, record_end, recorded_tasks
from poolparty.store.inputs import BatchFiles
from poolparty.store.journal import StoredChunks
from poolparty.store.result_limit import ResultTooLargeError
from poolparty.store.run_info import read_result_limit
from poolparty.store.trust import check_batch
from poolparty.store.usage import measure


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
    except BaseException as e:  # an unpicklable result or exception is reported, not lost silently
        if ok:  # the pickler's own error (TypeError, PicklingError, sys.exit() in a __reduce__ ...)
            e.add_note(f"(poolparty: the task's return value of type {type(value).__name__} cannot be pickled "
                       "to travel back; return data, not open files, locks or connections)")
            info = ExceptionInfo.capture(e, "result", short_repr(value))
            try:
                data = dumps(info)
                pickle.loads(data)  # an exception that a custom __reduce__ raised may not come back
                return False, data
            except BaseException:
                pass
        else:
            info = value  # an ExceptionInfo whose exception object does not pickle (or unpickle)
        assert isinstance(info, ExceptionInfo)
        info.exc = None  # its type name and traceback still travel
        return False, dumps(info)


def adopt_import_path(entries: list[str]) -> None:
    """Put the driver's directories that this node sees first on ``sys.path``, in the driver's order
    (the script's directory first), so that what did not travel by value (an ``import`` inside a task,
    a compiled extension next to the script) is imported as on the driver."""
    sys.path[:0] = [p for p in entries if p not in sys.path and os.path.exists(p)]


def short_repr(value: object) -> str:
    try:
        text = repr(value)
    except BaseException:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:200] + "..."


class ChunkRunner:
    """Runs chunks of one batch in this process: the shared function is loaded (and the pool's
    initializer run) once, whatever the number of chunks."""

    def __init__(self, files: BatchFiles, sub: int, own: int, home: tuple[int, int] | None = None):
        self.files, self.sub, self.own, self.token, self.home = files, sub, own, job_token(), home
        self.stored = StoredChunks(files.journal)
        self.stopped = False  # a chunk was left unfinished at the walltime warning: run nothing more
        self.tasks_run = 0
        self.limit = read_result_limit(files.run)
        self.memory_limit = address_space_limit()
        self.shared_error: ExceptionInfo | None = None
        try:
            adopt_import_path(files.import_path())  # before any unpickling: it may import the user's modules
            self.shared = files.read_shared()
        except Exception as e:  # e.g. ModuleNotFoundError: every task reports it, nothing hangs
            self.shared, self.shared_error = None, ExceptionInfo.capture(e)
        if self.shared is not None and self.shared.initializer is not None:
            try:  # once per process, before its first task, as in multiprocessing and concurrent.futures
                self.shared.initializer(*self.shared.initargs)
            except BaseException as e:  # each task reports it: an Executor calls itself broken
                self.shared, self.shared_error = None, ExceptionInfo.capture(e, "initializer")

    def run(self, chunk: int, *, capture: bool = False) -> bool | None:
        """Run one chunk if this process may (see :func:`~poolparty.store.claims.claim`); None if it may not, else
        whether every task succeeded. ``capture``: the chunk is not this element's own, so its output
        goes into its part file (a ``log`` record) instead of this job's log file. Raises
        :class:`MemoryLimitReached` once the chunk's part file says so (its finished tasks kept in it)."""
        out = claim(self.files.incoming, self.stored, chunk, self.sub, self.own, self.token, self.home)
        if out is None:
            return None
        with out:
            error = self.shared_error
            try:
                indices, payloads = self.files.read_chunk(chunk)
            # a damaged input, or one naming a module this node cannot import (as the shared function's
            # error above): each of its tasks fails with the error, where a resubmission would fail again
            except (CorruptWorkDirError, ImportError, AttributeError) as e:
                indices, error = self.files.chunk_tasks(chunk), ExceptionInfo.capture(e)
                payloads = [None] * len(indices)
            done = recorded_tasks(self.files.incoming, chunk)
            stopped = None
            with OutputCapture(capture) as captured:
                try:
                    all_ok = self._run_tasks(out, indices, payloads, done, error)
                except MemoryLimitReached as e:
                    all_ok, stopped = False, e
            if captured.data or (capture and not all_ok):
                out.append({"log": True, "runner": self.own}, captured.data)
            out.append(measure(self.own))  # this process's CPU, peak memory and wall so far, for the efficiency report
            if stopped is not None:  # not published: the driver resubmits the chunk with more memory
                record_end(out, END_OUT_OF_MEMORY, str(stopped))
                raise stopped
            if self.stopped:  # not published: the driver resubmits the rest, not counted as a failure
                record_end(out, END_WALLTIME_STOP, "the job's walltime warning came")
            out.sync()
            if not self.stopped:
                publish(out.path)
        return all_ok

    def _run_tasks(self, out: records.RecordWriter, indices: list[int], payloads: list[object],
                   done: set[int], error: ExceptionInfo | None) -> bool:
        """Run (or, given ``error``, fail with it) each task not ``done``; whether every one succeeded."""
        all_ok = error is None
        for index, item in zip(indices, payloads):
            if index in done:
                continue
            # a task started now would not finish: the next job runs it (each job runs one at least: an
            # early warning, SLURM's may come up to a minute early, must not loop without progress)
            if walltime_warned() and self.tasks_run:
                self.stopped = True
                break
            self.tasks_run += 1
            if error is not None:
                ok, data = encode_result(False, error)
            else:
                checkpoint.bind(TaskState(self.files.incoming, index))
                try:
                    ok, data = encode_result(True, run_payload(item, self.shared), self.limit)
                except checkpoint.Continued:  # saved its state at the warning: continued in the next job
                    self.stopped = True
                    break
                except BaseException as e:  # sys.exit(3), KeyboardInterrupt: the task's outcome, not our death
                    if is_over_memory_limit(e, self.memory_limit):  # the job's memory, not the task
                        raise MemoryLimitReached(index, self.memory_limit or 0) from None
                    ok, data = encode_result(False, ExceptionInfo.capture(e))
                finally:
                    checkpoint.bind(None)
            sys.stdout.flush()
            sys.stderr.flush()
            out.append({"task": index, "ok": ok}, data)
            all_ok = all_ok and ok
        return all_ok


def run_element(files: BatchFiles, own: int, sub: int, others: list[int], walltime: float | None) -> int:
    """This element's own chunk, then (``others``: the submission's other chunks) each one whose own
    element has not started, lowest first (results keep arriving roughly in order, for ``imap``), as
    long as the walltime leaves room for two more chunks as long as the longest so far, and its
    warning has not come."""
    started = time.monotonic()
    runner = ChunkRunner(files, sub, own)
    if runner.run(own) is not False:  # ran without a failed task, or was someone else's: the log is empty
        drop_quiet_log(files.incoming)
    longest = time.monotonic() - started
    for chunk in sorted(others):
        if runner.stopped or walltime_warned():
            break
        if walltime is not None and time.monotonic() - started + 2 * longest > walltime:
            break
        if chunk == own or is_claimed(files.incoming, chunk, sub):
            continue
        wait_for_the_driver(files.incoming)
        t0 = time.monotonic()
        if runner.run(chunk, capture=True) is not None:
            longest = max(longest, time.monotonic() - t0)
    return 0


#: the exit status of a job that stopped its chunk at the memory limit (the part file says why)
EXIT_MEMORY_LIMIT = 1

#: published chunks the driver has not stored yet beyond which an element waits before claiming another
MAX_UNSTORED = 16


def wait_for_the_driver(incoming: Path, patience: float = 2.0) -> None:
    """Back-pressure: elements that run short chunks back to back can publish faster than the driver
    stores; the files in the shared directory stay bounded if they wait for it (never for long: a driver
    that is gone must not stall the work)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if published(incoming) < MAX_UNSTORED:  # 0 once incoming/ is gone: the batch ended
            return
        time.sleep(0.02)


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


def job_token() -> str:
    """The scheduler's id of this job: stable when the scheduler requeues it, distinct for a duplicate.
    (SLURM, SGE, PBS, LSF, the local queue; LSF's id is the array's, the element's chunk tells them apart.)"""
    for var in ("SLURM_JOB_ID", "JOB_ID", "PBS_JOBID", "LSB_JOBID", "POOLPARTY_JOB_ID"):
        value = os.environ.get(var, "")
        if value:
            return "".join(ch if ch.isalnum() else "_" for ch in value)
    return f"p{os.getpid()}"


def chunk_from_environment(offset: int, index_env: str) -> int:
    raw = os.environ.get(index_env)
    if raw is None or not raw.isdigit():
        raise SystemExit(f"poolparty.node.worker: environment variable {index_env}={raw!r} is not an array index")
    return offset + int(raw)


USAGE = ("usage: python -m poolparty.node.worker BATCH_DIR --sub N (--chunk C | --offset O --index-env VAR)\n"
         "                                 [--claim INDICES] [--walltime SECONDS] [--deadline EPOCH]\n"
         "                                 [--linger SECONDS --shape KEY] [--warn-in SECONDS]\n"
         "  --sub: submission number (names the part file); --chunk: the chunk (plain jobs);\n"
         "  --offset/--index-env: chunk = offset + the array index in that variable (array jobs);\n"
         "  --claim: the submission's array indices (e.g. 0-63): after its own chunk, the element runs those\n"
         "  whose own element has not started; --walltime: the job's limit, so it stops claiming in time;\n"
         "  --deadline: when this job ends itself, its process group included (the local queue's jobs, whose\n"
         "  driver may be gone); --linger/--shape: then run chunks the driver offers to warm elements of this\n"
         "  resource shape, until idle that long (see poolparty.node.linger); --warn-in: the walltime warning\n"
         "  after that long, where no signal comes")

OPTIONS = ("--sub", "--chunk", "--offset", "--index-env", "--claim", "--walltime", "--deadline", "--linger",
           "--shape", "--warn-in")


class WorkerArgs(NamedTuple):
    batch: Path
    sub: int
    chunk: int | None  # a plain job's chunk; None for an array element (see index_env)
    offset: int
    index_env: str
    claim: list[int]  # the submission's array indices an element may claim (see run_element)
    walltime: float | None
    deadline: float | None = None  # seconds since the epoch (see end_job_at)
    linger: float = 0.0  # idle seconds a warm element waits for offered chunks (see poolparty.node.linger)
    shape: str = ""  # its resource shape, as the driver names offers
    warn_in: float | None = None  # the walltime warning's own timer, where the scheduler sends none


def parse_args(argv: list[str]) -> WorkerArgs:
    """The argv poolparty itself writes (argparse and what it imports would cost every job ~7 ms)."""
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    if not argv:
        raise SystemExit(USAGE)
    rest = argv[1:]
    if len(rest) % 2 or any(k not in OPTIONS for k in rest[::2]):
        raise SystemExit(f"poolparty.node.worker: bad arguments {argv!r}\n{USAGE}")
    opts = dict(zip(rest[::2], rest[1::2]))
    try:
        args = WorkerArgs(
            Path(argv[0]), int(opts.get("--sub", "0")),
            int(opts["--chunk"]) if "--chunk" in opts else None, int(opts.get("--offset", "0")),
            opts.get("--index-env", ""), parse_indices(opts.get("--claim", "")),
            float(opts["--walltime"]) if "--walltime" in opts else None,
            float(opts["--deadline"]) if "--deadline" in opts else None,
            float(opts.get("--linger", "0")), opts.get("--shape", ""),
            float(opts["--warn-in"]) if "--warn-in" in opts else None)
    except ValueError:
        raise SystemExit(f"poolparty.node.worker: bad arguments {argv!r}\n{USAGE}") from None
    if "--sub" not in opts:
        raise SystemExit(f"poolparty.node.worker: --sub is required\n{USAGE}")
    if not args.shape.isalnum() and args.shape:  # it names files in the run's warm/ directory
        raise SystemExit(f"poolparty.node.worker: --shape {args.shape!r} is not alphanumeric\n{USAGE}")
    if args.chunk is None and not args.index_env:
        raise SystemExit(f"poolparty.node.worker: give --chunk or --index-env\n{USAGE}")
    return args


def watch_deadline(deadline: float) -> None:
    """End this job at ``deadline`` even if no driver is left to (an orphan of a killed driver on the local
    queue); a thread, so a task blocked in C cannot hold it off."""
    import threading

    threading.Thread(target=end_job_at, args=(deadline,), name="poolparty-deadline", daemon=True).start()


def end_job_at(deadline: float) -> None:
    """Sleep until ``deadline``, then SIGKILL the job: its escaped descendants, then its process group
    (ours only if this worker leads it, as the local queue starts it), else this process alone."""
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 60.0))
    import signal

    from poolparty.queues.local_procs import JOB_ENV, end_jobs

    end_jobs([os.environ.get(JOB_ENV, "")])
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    install_warning(args.warn_in)  # first: the warning may come early (SLURM's lead is coarse)
    if args.deadline is not None:
        watch_deadline(args.deadline)
    files = BatchFiles(args.batch.resolve())
    check_batch(files.path, files.incoming)  # pickles are code: only from directories nobody else can write
    try:
        if args.chunk is not None:  # a plain job: its one chunk
            return run_element(files, args.chunk, args.sub, [], None)
        own = chunk_from_environment(args.offset, args.index_env)
        started = time.monotonic()
        rc = run_element(files, own, args.sub, [args.offset + i for i in args.claim], args.walltime)
        if args.linger > 0 and args.shape:
            from poolparty.node.linger import linger

            linger(files, own, args.sub, args.shape, args.linger,
                   None if args.walltime is None else started + args.walltime, time.monotonic() - started)
        return rc
    except MemoryLimitReached as e:  # no further chunk: the next one would likely run out as well
        print(f"poolparty: {e}; the chunk stops here, and the driver resubmits it with more memory",
              file=sys.stderr)
        return EXIT_MEMORY_LIMIT


if __name__ == "__main__":
    sys.exit(main())
