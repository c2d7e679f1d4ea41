"""Who runs a chunk: its part file, created exclusively, is the claim.

An array element runs its own chunk, then (when the dispatcher allows it) chunks of the same submission
whose own elements have not started yet: one Python start-up then serves several chunks. A chunk's part
file ``c<chunk>.s<sub>.part`` is created with ``O_EXCL`` by whoever runs it, and its first record names
the runner (the runner's own chunk and job token), so the dispatcher knows whose death to watch for.
The own element of a claimed chunk stays queued and, when it starts, finds the claim and leaves. A chunk
the driver has stored is recorded in the batch's journal before its files are deleted, so an element
that starts late never runs it again.
"""
from __future__ import annotations

from pathlib import Path

from poolparty.store import records

#: the journal event the driver writes (see Journal.record_stored) once chunks are in the store
STORED = "stored"


def part_path(incoming: Path, chunk: int, sub: int) -> Path:
    return incoming / f"c{chunk}.s{sub}.part"


def parse_part_name(name: str) -> tuple[int, int] | None:
    """(chunk, submission) of a ``c<chunk>.s<sub>.part`` or ``.done`` name, else None."""
    if name[:1] != "c" or not name.endswith((".part", ".done")):
        return None
    try:
        chunk, sub = (int(x[1:]) for x in name[:-5].split("."))
    except ValueError:
        return None
    return chunk, sub


def runner_of(path: Path) -> tuple[int, str] | None:
    """(runner's own chunk, job token) from a part or done file's first record, if it has one."""
    for rec in records.read_records(path):
        if "runner" in rec.key:
            return int(rec.key["runner"]), str(rec.key.get("job", ""))
        return None
    return None


class StoredChunks:
    """The chunks the driver has stored, from the batch's journal, read on from where the last look
    stopped: an element checks every chunk it might claim, and the journal grows through the map."""

    def __init__(self, journal: Path):
        self.journal = journal
        self._offset = 0
        self._chunks: set[int] = set()

    def __contains__(self, chunk: int) -> bool:
        if chunk not in self._chunks:
            for rec in records.read_records(self.journal, self._offset):
                self._offset = rec.end
                if rec.key.get("ev") == STORED:
                    self._chunks.update(rec.key.get("chunks", ()))
        return chunk in self._chunks


def claim(incoming: Path, stored: StoredChunks, chunk: int, sub: int, runner: int,
          job: str) -> records.RecordWriter | None:
    """The writer of this chunk's part file if this process may run it, else None: stored already,
    published, or claimed by another live job. A part file this very job (same runner, same token)
    left behind — a scheduler requeue — is taken up again; a twin still writing it holds its flock."""
    part = part_path(incoming, chunk, sub)

    def finished() -> bool:
        return part.with_suffix(".done").exists() or chunk in stored

    if finished():
        return None
    try:
        writer = records.RecordWriter(part, exclusive=True, create_new=True)
    except FileExistsError:
        if runner_of(part) != (runner, job):
            return None
        try:
            return records.RecordWriter(part, exclusive=True)
        except (BlockingIOError, FileNotFoundError):
            return None
    writer.append({"runner": runner, "job": job})
    # published and stored between the first look and the create: give the name back
    if finished():
        writer.close()
        part.unlink(missing_ok=True)
        return None
    return writer
