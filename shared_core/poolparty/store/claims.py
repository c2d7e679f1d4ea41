"""Who runs a chunk: its part file in ``incoming/``, created exclusively, is the claim.

An array element runs its own chunk, then (when the dispatcher allows it) chunks of the same submission
whose own elements have not started yet: one Python start-up then serves several chunks. A chunk's part
file (see :func:`poolparty.store.layout.part_name`) is created with ``O_EXCL`` by whoever runs it, and its
first record names the runner (the runner's own chunk and job token), so the dispatcher knows whose death
to watch for. The own element of a claimed chunk stays queued and, when it starts, finds the claim and
leaves. A chunk the driver has stored is recorded in the batch's journal before its files are deleted,
so an element that starts late never runs it again. A warm element (``linger``) that claims a chunk of
another batch also names its home, the batch and submission it was submitted with: the driver finds its
job from that.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from poolparty.store import records
from poolparty.store.journal import StoredChunks
from poolparty.store.layout import done_path, part_path


class Runner(NamedTuple):
    """Who runs a chunk: its own chunk, its job token and, for a warm element of another batch, the
    (batch, submission) it was submitted with."""

    chunk: int
    job: str
    home: tuple[int, int] | None = None


def runner_of(path: Path) -> Runner | None:
    """The runner a part or done file's first record names, if it has one."""
    for rec in records.read_records(path):
        if "runner" in rec.key:
            home = rec.key.get("home")
            return Runner(int(rec.key["runner"]), str(rec.key.get("job", "")),
                          (int(home[0]), int(home[1])) if isinstance(home, list) and len(home) == 2 else None)
        return None
    return None


def claim(incoming: Path, stored: StoredChunks, chunk: int, sub: int, runner: int,
          job: str, home: tuple[int, int] | None = None) -> records.RecordWriter | None:
    """The writer of this chunk's part file if this process may run it, else None: stored already,
    published, or claimed by another live job. A part file this very job (same runner, same token)
    left behind — a scheduler requeue — is taken up again; a twin still writing it holds its flock.
    ``home``: a warm element's own (batch, submission), when the chunk is of another batch."""
    part = part_path(incoming, chunk, sub)

    def finished() -> bool:
        return done_path(part).exists() or chunk in stored

    if finished():
        return None
    try:
        writer = records.RecordWriter(part, exclusive=True, create_new=True)
    except FileExistsError:
        if runner_of(part) != (runner, job, home):
            return None
        try:
            return records.RecordWriter(part, exclusive=True)
        except (BlockingIOError, FileNotFoundError):
            return None
    writer.append({"runner": runner, "job": job, **({"home": list(home)} if home else {})})
    # published and stored between the first look and the create: give the name back
    if finished():
        writer.close()
        part.unlink(missing_ok=True)
        return None
    return writer


def is_claimed(incoming: Path, chunk: int, sub: int) -> bool:
    """Whether someone (an element, or the driver blocking the name) holds this chunk's part name."""
    return part_path(incoming, chunk, sub).exists()



def block(incoming: Path, chunk: int, sub: int) -> bool:
    """The driver takes a chunk's part name of submission ``sub`` (an empty file: it runs nothing), so that
    no element of that submission starts the chunk from now on; False if someone holds it already."""
    try:
        part_path(incoming, chunk, sub).touch(mode=0o600, exist_ok=False)
        return True
    except FileExistsError:
        return False
