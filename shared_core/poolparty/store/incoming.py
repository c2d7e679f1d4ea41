"""A batch's ``incoming/`` directory as both sides use it: the worker writes a chunk's part file and
publishes it as done, the driver lists a chunk's files to store them, and either side asks what tasks
an earlier attempt already recorded (a chunk is never run twice for a task it has a result of). A worker
that stops a chunk early for a reason of its job (the memory limit) says why in the part file, which
then stays unpublished, like the part file of a job the scheduler killed."""
from __future__ import annotations

import os
from pathlib import Path

from poolparty.store import records
from poolparty.store.layout import chunk_file_names, done_path, is_done_name, parse_part_name, part_path

#: why a chunk's worker stopped it before its last task (see :func:`record_end`): a task reached the job's
#: memory limit, or the job's walltime warning came
END_OUT_OF_MEMORY = "out of memory"
END_WALLTIME_STOP = "stopped at the walltime warning"


def chunk_files(incoming: Path, chunk: int, listing: list[str] | None = None) -> list[Path]:
    """This chunk's worker files, finished ones first (from ``listing`` of incoming/ if given)."""
    try:
        names = os.listdir(incoming) if listing is None else listing
    except FileNotFoundError:
        return []
    return [incoming / n for n in chunk_file_names(names, chunk)]


def recorded_tasks(incoming: Path, chunk: int) -> set[int]:
    """Task indices that any attempt of this chunk has already recorded."""
    return {r.key["task"] for path in chunk_files(incoming, chunk) for r in records.read_records(path)
            if "task" in r.key}


def record_end(out: records.RecordWriter, end: str, detail: str) -> None:
    """Record in a chunk's part file why its worker stops it before its last task (``end``: one of the
    ``END_*`` words), and make it durable: the driver reads it once the job is gone."""
    out.append({"end": end, "detail": detail})
    out.sync()


def recorded_end(incoming: Path, chunk: int, sub: int) -> tuple[str, str] | None:
    """(end, detail) that the worker of submission ``sub`` recorded for this chunk, if it stopped it early."""
    for r in records.read_records(part_path(incoming, chunk, sub)):
        if "end" in r.key:
            return str(r.key["end"]), str(r.key.get("detail", ""))
    return None


def published_chunks(incoming: Path) -> set[int]:
    """Chunks with a published (done) file the driver has not stored yet; empty when the directory is gone."""
    try:
        names = os.listdir(incoming)
    except FileNotFoundError:
        return set()
    return {parsed.chunk for n in names if is_done_name(n) and (parsed := parse_part_name(n)) is not None}


def published(incoming: Path) -> int:
    """Chunks published (done) and not stored by the driver yet; 0 when the directory is gone."""
    try:
        return sum(1 for n in os.listdir(incoming) if is_done_name(n))
    except FileNotFoundError:
        return 0


def publish(part: Path) -> None:
    """``.part`` -> ``.done`` without ever replacing a ``.done`` another run of this job wrote."""
    done = done_path(part)
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


class RecordedTasks:
    """Tasks recorded in a batch's worker files (running and finished chunks not stored yet), followed
    incrementally: a chunk's part file gains one record per task as its worker goes, so the driver sees
    progress inside a chunk without asking the scheduler. For display only (payloads are not checked)."""

    def __init__(self, incoming: Path):
        self.incoming = incoming
        self._files: dict[str, tuple[int, set[int]]] = {}  # name -> (bytes read, tasks found)

    def tasks(self) -> set[int]:
        """Every task index recorded in the files present now."""
        try:
            names = [n for n in os.listdir(self.incoming) if parse_part_name(n) is not None]
        except FileNotFoundError:
            names = []
        self._files = {n: self._follow(n, *self._files.get(n, (0, set()))) for n in names}
        return set().union(*(tasks for _, tasks in self._files.values()))

    def _follow(self, name: str, offset: int, tasks: set[int]) -> tuple[int, set[int]]:
        for key, end in records.read_keys(self.incoming / name, offset):
            if "task" in key:
                tasks.add(key["task"])
            offset = end
        return offset, tasks
