"""Who runs a chunk: its part file in ``incoming/``, created exclusively, is the claim.

An array element runs its own chunk, then (when the dispatcher allows it) chunks of the same submission
whose own elements have not started yet: one Python start-up then serves several chunks. A chunk's part
file (see :func:`poolparty.store.layout.part_name`) is created with ``O_EXCL`` by whoever runs it, and its
first record names the runner (the runner's own chunk and job token), so the dispatcher knows whose death
to watch for. The own element of a claimed chunk stays queued and, when it starts, finds the claim and
leaves. A chunk the driver has stored is recorded in the batch's journal before its files are deleted,
so an element that starts late never runs it again.
"""
from __future__ import annotations

from pathlib import Path

from poolparty.store import records
from poolparty.store.journal import StoredChunks
from poolparty.store.layout import done_path, part_path


def runner_of(path: Path) -> tuple[int, str] | None:
    """(runner's own chunk, job token) from a part or done file's first record, if it has one."""
    for rec in records.read_records(path):
        if "runner" in rec.key:
            return int(rec.key["runner"]), str(rec.key.get("job", ""))
        return None
    return None


def claim(incoming: Path, stored: StoredChunks, chunk: int, sub: int, runner: int,
          job: str) -> records.RecordWriter | None:
    """The writer of this chunk's part file if this process may run it, else None: stored already,
    published, or claimed by another live job. A part file this very job (same runner, same token)
    left behind — a scheduler requeue — is taken up again; a twin still writing it holds its flock."""
    part = part_path(incoming, chunk, sub)

    def finished() -> bool:
        return done_path(part).exists() or chunk in stored

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


def is_claimed(incoming: Path, chunk: int, sub: int) -> bool:
    """Whether someone (an element, or the driver blocking the name) holds this chunk's part name."""
    return part_path(incoming, chunk, sub).exists()

