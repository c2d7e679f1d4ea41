"""A run directory read from disk, without its driver: what ``poolparty status``, ``logs``, ``resume``,
``cancel`` and ``clean`` know about a run (batches, chunks, attempts, job ids, results, failures, logs).
A chunk's state is the engine's own word for it, :class:`~poolparty.phases.ChunkPhase`.

Nothing here writes to the run; asking whether a driver is alive takes its lock for a moment.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from poolparty.errors import PoolPartyError
from poolparty.phases import ChunkPhase
from poolparty.store import records
from poolparty.store.incoming import recorded_tasks
from poolparty.store.inputs import BatchFiles
from poolparty.store.journal import replay
from poolparty.store.layout import (BATCHES_DIR, LOCK_FILE, LOGS_FILE, RUN_INFO_FILE, job_log_name, job_name,
                                    relative_batch_dir)
from poolparty.store.run_dir import complete_batches, is_run_dir
from poolparty.store.run_info import read_run_info
from poolparty.store.run_lock import holder
from poolparty.store.trust import is_private


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
    state: str  # a ChunkPhase value: done | failed (gave up) | queued (submitted, no result yet) | waiting,
    # or CANCELLED: its job was cancelled by its own driver (Ctrl-C, terminate); a resume submits it again
    attempts: int = 0  # submissions recorded in the journal
    resubmissions: int = 0  # attempts after a job was lost (one after a cancellation is not one)
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
    damaged: list[tuple[int, int]] = field(default_factory=list)  # skipped regions of results.rec

    def count(self, phase: ChunkPhase) -> int:
        return sum(1 for c in self.chunks if c.state == phase.value)


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


def batch_dirs(path: Path) -> list[tuple[int, BatchFiles]]:
    """(number, files) of every batch whose inputs are complete (meta.json written), in order."""
    return [(number, BatchFiles(p)) for number, p in complete_batches(path)]


def read_run(path: str | os.PathLike[str], *, load_errors: bool = True) -> RunState:
    """Everything the run's files say. ``load_errors``: unpickle failed tasks' exceptions (only from a
    private directory: pickles are code)."""
    p = Path(path).absolute()
    if not is_run_dir(p):
        raise NotARunError(f"{p} is not a poolparty work_dir (no run.json, or no job.sh and batches/)")
    info = read_run_info(p)
    load_errors = load_errors and is_private(p)  # pickles are code: only from a private directory
    batches = [_read_batch(number, files, load_errors) for number, files in batch_dirs(p)]
    return RunState(str(p), info.get("job_name") or job_name(p), info.get("queue"), info, holder(p), batches)


def stored_results(files: BatchFiles, skipped: list[tuple[int, int]] | None = None
                   ) -> dict[int, tuple[bool, int, int]]:
    """task -> (ok, chunk, offset in results.rec), first record wins (as the result store); damaged
    regions are skipped (and appended to ``skipped`` as (offset, length)), as the result store does."""
    out: dict[int, tuple[bool, int, int]] = {}
    for rec in records.read_records(files.results, resync=True, skipped=skipped):
        out.setdefault(rec.key["task"], (rec.key["ok"], rec.key.get("chunk", -1), rec.offset))
    return out


#: the state ``status`` shows for a chunk whose job its own driver cancelled
CANCELLED = "cancelled"


def chunk_phase(pending: bool, gave_up: bool, submitted: bool) -> ChunkPhase:
    """A chunk's phase as its files tell it: every task stored, given up, submitted, or not yet."""
    if not pending:
        return ChunkPhase.DONE
    if gave_up:
        return ChunkPhase.FAILED
    return ChunkPhase.QUEUED if submitted else ChunkPhase.WAITING


def _read_batch(number: int, files: BatchFiles, load_errors: bool) -> BatchState:
    meta = files.read_meta()
    replayed = replay(files.journal)
    journal = replayed.chunks
    damaged: list[tuple[int, int]] = []
    stored = stored_results(files, damaged)
    rel = relative_batch_dir(number)
    chunks: list[ChunkState] = []
    failures: list[TaskFailure] = []
    for chunk, tasks in enumerate(meta.get("chunk_tasks", [])):
        history = journal.get(chunk)
        tried = history.attempts if history is not None else []
        gave_up = history.gave_up if history is not None else None
        done = {t for t in tasks if t in stored}
        pending = [t for t in tasks if t not in done]
        extra = recorded_tasks(files.incoming, chunk) & set(pending) if pending and tried else set()
        errors = [t for t in done if not stored[t][0]]
        # recorded as stored but its results are not all in the store (damaged): waiting to be recomputed
        phase = chunk_phase(bool(pending), gave_up is not None, bool(tried) and chunk not in replayed.stored)
        cancelled = phase is ChunkPhase.QUEUED and history is not None and history.cancelled
        c = ChunkState(chunk, list(tasks), CANCELLED if cancelled else phase.value, len(tried),
                       history.resubmissions if history is not None else 0, [a.element for a in tried],
                       [a.job for a in tried], len(done) + len(extra), len(errors), gave_up)
        if phase is ChunkPhase.QUEUED:
            live = files.incoming / job_log_name(tried[-1].element)
            c.live_log = str(live) if live.exists() else None
        chunks.append(c)
        for t in sorted(errors):
            text = _error_text(files, stored[t][2]) if load_errors else "(not loaded: the work_dir is not private)"
            failures.append(TaskFailure(number, t, chunk, text, f"{rel}/{LOGS_FILE} chunk {chunk}"))
    return BatchState(number, str(files.path), meta.get("kind", "?"), meta.get("created", 0.0),
                      meta.get("n_tasks", 0), chunks, failures, damaged)


def task_traceback(files: BatchFiles, task: int) -> str | None:
    """The remote traceback of a task that raised (None if it did not, or has no result yet). Unpickles:
    call it only for a private run."""
    found = stored_results(files).get(task)
    if found is None or found[0]:
        return None
    try:
        return cloudpickle.loads(records.read_at(files.results, found[2]).payload).traceback
    except Exception as e:
        return f"(traceback not readable here: {type(e).__name__}: {e})"


def _error_text(files: BatchFiles, offset: int) -> str:
    try:
        info = cloudpickle.loads(records.read_at(files.results, offset).payload)
        return f"{info.type_name}: {info.message}"
    except Exception as e:  # e.g. the exception's class is not importable here
        return f"(exception not readable here: {type(e).__name__}: {e})"


def last_activity(path: Path) -> float:
    """The newest modification time of the run's own files (run.json, lock, journals, results, logs)."""
    newest = 0.0
    candidates = [path, path / RUN_INFO_FILE, path / LOCK_FILE, path / BATCHES_DIR]
    for _, files in batch_dirs(path):
        candidates += [files.path, files.journal, files.results, files.logs, files.incoming]
    for c in candidates:
        try:
            newest = max(newest, c.stat().st_mtime)
        except OSError:
            pass
    return newest or time.time()
