"""Task checkpoints in ``incoming/``: the state a task saved (see :mod:`poolparty.checkpoint`), one file per
task, replaced whole (write, fsync, rename), so a job killed mid-save leaves the previous state. The files
are in the batch's private ``incoming/`` (checked by :func:`poolparty.store.trust.check_batch` before a
worker reads anything) and framed as records (a torn or foreign file reads as no state)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from poolparty.store import records
from poolparty.store.layout import checkpoint_name


def save_state(incoming: Path, task: int, data: bytes) -> None:
    """``data`` (a pickle) becomes the task's state; the previous one stays until the new one is whole."""
    path = incoming / checkpoint_name(task)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(records.encode({"checkpoint": task}, data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(incoming: Path, task: int) -> bytes | None:
    """The task's saved state, or None if it saved none."""
    for rec in records.read_records(incoming / checkpoint_name(task)):
        return rec.payload if rec.key.get("checkpoint") == task else None
    return None


def drop_states(incoming: Path, tasks: Iterable[int]) -> None:
    """A stored chunk's tasks need their states no more."""
    for task in tasks:
        (incoming / checkpoint_name(task)).unlink(missing_ok=True)
