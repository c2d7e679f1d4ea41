"""A run directory read from disk, without its driver: what ``poolparty status``, ``logs``, ``resume``,
``cancel`` and ``clean`` know about a run (batches, chunks, attempts, job ids, results, failures, logs).

Nothing here writes to the run, except :func:`try_lock`, which takes the driver's lock for a moment
(or for as long as ``clean`` deletes the run).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cloudpickle

from poolparty.store import records
from poolparty.store.inputs import BatchFiles
from poolparty.engine.engine import job_name
from poolparty.errors import PoolPartyError, UnsafeWorkDirError
from poolparty.store.layout import check_private


class NotARunError(PoolPartyError):
    """The directory is not a poolparty work_dir."""


@dataclass
class TaskFailure:
    batch: int
    task: int
    chunk: int
    error: str  # "module.Type: message"
    log: str  # how to see the chunk's job log


@dataclass
class ChunkState:
    chunk: int
    tasks: list[int]
    state: str  # done | failed (gave up) | queued (submitted, no result yet) | unsubmitted
    attempts: int = 0  # submissions recorded in the journal
    elements: list[str] = field(default_factory=list)  # the scheduler's id of each attempt
    job_ids: list[str] = field(default_factory=list)  # the submission (array) of each attempt
    tasks_done: int = 0
    task_errors: int = 0
    reason: str | None = None  # why it gave up
    live_log: str | None = None  # the running job's log file, while the chunk is queued


@dataclass
class BatchState:
    number: int
    path: str
    kind: str
    created: float
    n_tasks: int
    chunks: list[ChunkState]
    failures: list[TaskFailure]

    def count(self, state: str) -> int:
        return sum(1 for c in self.chunks if c.state == state)


@dataclass
class RunState:
    path: str
    job_name: str
    queue: str | None  # from run.json (None: a run made before run.json existed)
    info: dict[str, Any]  # run.json
    driver: str | None  # "pid N on HOST" while a live driver holds the lock
    batches: list[BatchState]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "run.json").is_file() or
                              ((path / "job.sh").is_file() and (path / "batches").is_dir()))


def read_info(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def batch_dirs(path: Path) -> list[tuple[int, BatchFiles]]:
    """(number, files) of every batch whose inputs are complete (meta.json written), in order."""
    out = []
    try:
        entries = sorted(os.listdir(path / "batches"))
    except FileNotFoundError:
        return out
    for name in entries:
        if name.isdigit() and (path / "batches" / name / "meta.json").is_file():
            out.append((int(name), BatchFiles(path / "batches" / name)))
    return out


@contextmanager
def try_lock(path: Path) -> Iterator[str | None]:
    """Hold the run's lock while the block runs; yields None, or who holds it (a live driver)."""
    try:
        fd = os.open(path / "lock", os.O_RDWR)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            return
        yield None
    finally:
        os.close(fd)


def driver_of(path: Path) -> str | None:
    """Who holds the run's lock ("pid N on HOST"), or None when no driver is alive."""
    with try_lock(path) as holder:
        return holder


def read_run(path: str | os.PathLike[str], *, load_errors: bool = True) -> RunState:
    """Everything the run's files say. ``load_errors``: unpickle failed tasks' exceptions (only from a
    private directory: pickles are code)."""
    p = Path(path).absolute()
    if not is_run_dir(p):
        raise NotARunError(f"{p} is not a poolparty work_dir (no run.json, or no job.sh and batches/)")
    info = read_info(p)
    if load_errors:
        try:
            check_private(p)
        except UnsafeWorkDirError:
            load_errors = False
    batches = [_read_batch(number, files, load_errors) for number, files in batch_dirs(p)]
    return RunState(str(p), info.get("job_name") or job_name(p), info.get("queue"), info, driver_of(p), batches)


def _journal(files: BatchFiles) -> tuple[dict[int, list[dict[str, Any]]], dict[int, str]]:
    """Every attempt of every chunk ({chunk: [{sub, job, element}]}) and the give-ups ({chunk: why})."""
    attempts: dict[int, list[dict[str, Any]]] = {}
    gave_up: dict[int, str] = {}
    for rec in records.read_records(files.journal):
        k = rec.key
        if k.get("ev") == "sub":
            for chunk, element in zip(k["chunks"], k["elements"]):
                attempts.setdefault(chunk, []).append({"sub": k["sub"], "job": k["job"], "element": element})
        elif k.get("ev") == "giveup":
            gave_up[k["chunk"]] = k["why"]
    return attempts, gave_up


def stored_results(files: BatchFiles) -> dict[int, tuple[bool, int, int]]:
    """task -> (ok, chunk, offset in results.rec), first record wins (as the result store)."""
    out: dict[int, tuple[bool, int, int]] = {}
    for rec in records.read_records(files.results):
        out.setdefault(rec.key["task"], (rec.key["ok"], rec.key.get("chunk", -1), rec.offset))
    return out


def _incoming_tasks(files: BatchFiles, chunk: int) -> set[int]:
    """Tasks a worker recorded that the (dead or busy) driver has not moved into the store yet."""
    from poolparty.node.worker import recorded_tasks

    return recorded_tasks(files, chunk)


def _read_batch(number: int, files: BatchFiles, load_errors: bool) -> BatchState:
    meta = json.loads(files.meta.read_text())
    attempts, gave_up = _journal(files)
    stored = stored_results(files)
    rel = f"batches/{number:04d}"
    chunks: list[ChunkState] = []
    failures: list[TaskFailure] = []
    for chunk, tasks in enumerate(meta.get("chunk_tasks", [])):
        tried = attempts.get(chunk, [])
        done = {t for t in tasks if t in stored}
        pending = [t for t in tasks if t not in done]
        extra = _incoming_tasks(files, chunk) & set(pending) if pending and tried else set()
        errors = [t for t in done if not stored[t][0]]
        if not pending:
            state = "done"
        elif chunk in gave_up:
            state = "failed"
        elif tried:
            state = "queued"
        else:
            state = "unsubmitted"
        c = ChunkState(chunk, list(tasks), state, len(tried), [a["element"] for a in tried],
                       [a["job"] for a in tried], len(done) + len(extra), len(errors), gave_up.get(chunk))
        if state == "queued":
            live = files.incoming / f"j{tried[-1]['element']}.log"
            c.live_log = str(live) if live.exists() else None
        chunks.append(c)
        for t in sorted(errors):
            text = _error_text(files, stored[t][2]) if load_errors else "(not loaded: the work_dir is not private)"
            failures.append(TaskFailure(number, t, chunk, text, f"{rel}/logs.rec chunk {chunk}"))
    return BatchState(number, str(files.path), meta.get("kind", "?"), meta.get("created", 0.0),
                      meta.get("n_tasks", 0), chunks, failures)


def _error_text(files: BatchFiles, offset: int) -> str:
    try:
        info = cloudpickle.loads(records.read_at(files.results, offset).payload)
        return f"{info.type_name}: {info.message}"
    except Exception as e:  # e.g. the exception's class is not importable here
        return f"(exception not readable here: {type(e).__name__}: {e})"


def read_result(files: BatchFiles, offset: int) -> Any:
    """One stored result (or ExceptionInfo of a failed task), unpickled."""
    return cloudpickle.loads(records.read_at(files.results, offset).payload)


def last_activity(path: Path) -> float:
    """The newest modification time of the run's own files (run.json, lock, journals, results, logs)."""
    newest = 0.0
    candidates = [path, path / "run.json", path / "lock", path / "batches"]
    for _, files in batch_dirs(path):
        candidates += [files.path, files.journal, files.results, files.logs, files.incoming]
    for c in candidates:
        try:
            newest = max(newest, c.stat().st_mtime)
        except OSError:
            pass
    return newest or time.time()
