"""The reduced store: every task's result in one append-only record file, every job log in another, what
the workers measured of themselves (for the efficiency report) in a third.

A worker's ``.done``/``.part`` files are deleted only after their records are fsynced into the store
(a result once written is never lost). The first record stored for a task wins; later duplicates from
a resubmitted attempt that was in fact still running are dropped (exactly one result per task).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from poolparty.store import records
from poolparty.store.incoming import chunk_files
from poolparty.store.inputs import BatchFiles
from poolparty.store.layout import parse_part_name
from poolparty.store.usage import is_usage, stored_usage

LOG_TAIL_BYTES = 1 << 20


class ResultStore:
    """The driver's side of one batch's results and logs: absorbs the workers' files into the store."""

    def __init__(self, files: BatchFiles):
        self.files = files
        self.stored: dict[int, tuple[bool, int]] = {}  # task -> (ok, offset in results.rec)
        self.skipped: list[tuple[int, int]] = []  # damaged regions of results.rec: (offset, length)
        for rec in records.read_records(files.results, resync=True, skipped=self.skipped):
            self.stored.setdefault(rec.key["task"], (rec.key["ok"], rec.offset))
        self._results = records.RecordWriter(files.results)
        self._logs: records.RecordWriter | None = None
        self._usage: records.RecordWriter | None = None

    def damage_report(self, n_tasks: int) -> str | None:
        """What the reader skipped of ``results.rec`` (a flipped bit, a lost block), or None when nothing."""
        if not self.skipped:
            return None
        what = (f"{len(self.skipped)} damaged region(s) ({sum(n for _, n in self.skipped)} bytes) of "
                f"{self.files.results} were skipped")
        if len(self.stored) >= n_tasks:
            return f"{what}; every task has a sound record after them (recomputed by an earlier run)"
        return f"{what}; the tasks whose results were there are recomputed"

    def chunk_files(self, chunk: int, listing: list[str] | None = None) -> list[Path]:
        """This chunk's worker files, finished ones first (from ``listing`` of incoming/ if given)."""
        return chunk_files(self.files.incoming, chunk, listing)

    def absorb(self, chunk: int, paths: Iterable[Path], *, sync: bool = True) -> list[tuple[int, bool, bytes]]:
        """Store every new task record found in ``paths``; return what was new (task, ok, payload).
        ``sync=False``: the caller calls :meth:`sync` before it deletes ``paths`` (one fsync for many chunks)."""
        new: list[tuple[int, bool, bytes]] = []
        seen: set[int] = set()
        usage: list[dict] = []
        for path in paths:
            logs: list[records.Record] = []
            before = len(new)
            for rec in records.read_records(path):
                if "log" in rec.key:  # the output of a chunk that ran in another chunk's job
                    logs.append(rec)
                    continue
                if is_usage(rec.key):  # what the worker measured of itself, kept for the report
                    usage.append(stored_usage(rec.key, chunk, _submission(path)))
                    continue
                task = rec.key.get("task")
                if task is None:  # the claim record naming the runner
                    continue
                if task in self.stored or task in seen:
                    continue
                seen.add(task)
                new.append((task, rec.key["ok"], rec.payload))
            if len(new) > before:  # a duplicate run's output is not kept twice
                for rec in logs:
                    self._append_log(chunk, f"in the job of chunk {rec.key.get('runner')}", rec.payload)
        self._append_usage(usage)
        offsets = self._results.append_many([({"task": t, "ok": ok, "chunk": chunk}, data) for t, ok, data in new])
        for (task, ok, _), offset in zip(new, offsets):
            self.stored[task] = (ok, offset)
        if new and sync:
            self.sync()
        return new

    def sync(self) -> None:
        """fsync what :meth:`absorb` and :meth:`store_log` appended with ``sync=False``."""
        self._results.sync()
        if self._logs is not None:
            self._logs.sync()

    def store_log(self, chunk: int, element: str, path: Path, *, sync: bool = True,
                  keep_empty: bool = True) -> Path | None:
        """Append a job's log (its last MiB) to the store. ``sync=True``: fsync and delete the log file;
        ``sync=False``: return its path, to delete after :meth:`sync`. ``keep_empty=False``: an empty log
        is only deleted (a quiet, successful job leaves no record, and no ``logs.rec`` until one speaks)."""
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                if size > LOG_TAIL_BYTES:
                    f.seek(size - LOG_TAIL_BYTES)
                data = f.read()
        except FileNotFoundError:
            return None
        if not data and not keep_empty:
            if sync:
                path.unlink(missing_ok=True)
                return None
            return path
        self._append_log(chunk, element, data, size > LOG_TAIL_BYTES)
        if not sync:
            return path
        self._logs.sync()
        path.unlink(missing_ok=True)
        return None

    def _append_log(self, chunk: int, element: str, data: bytes, truncated: bool = False) -> None:
        if self._logs is None:
            self._logs = records.RecordWriter(self.files.logs)
        self._logs.append({"chunk": chunk, "element": element, "truncated": truncated}, data)

    def _append_usage(self, usage: list[dict]) -> None:
        """Written, never fsynced (a crash may cost the report a measure; no extra fsync per group of
        results for it)."""
        if usage:
            if self._usage is None:
                self._usage = records.RecordWriter(self.files.usage)
            self._usage.append_many([(k, b"") for k in usage])

    def read(self, task: int) -> tuple[bool, bytes]:
        ok, offset = self.stored[task]
        return ok, records.read_at(self.files.results, offset).payload

    def close(self) -> None:
        self._results.close()
        for writer in (self._logs, self._usage):
            if writer is not None:
                writer.close()


def _submission(path: Path) -> int:
    parsed = parse_part_name(path.name)
    return parsed.sub if parsed is not None else -1


def remove_files(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def read_logs(files: BatchFiles, chunk: int | None = None) -> list[tuple[dict, bytes]]:
    """The stored job logs of a batch (optionally of one chunk)."""
    return [(r.key, r.payload) for r in records.read_records(files.logs)
            if chunk is None or r.key.get("chunk") == chunk]
