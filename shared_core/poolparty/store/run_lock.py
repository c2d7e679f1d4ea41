"""The run's lock: an flock on ``<run>/lock`` held by the live driver for its whole life, the file naming
the holder ("pid N on HOST"). The driver takes it; ``status``, ``cancel``, ``clean`` and the Snakemake
plugin's old-log cleanup try it to learn whether a driver is alive."""
from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from poolparty.errors import WorkDirInUseError
from poolparty.store.layout import LOCK_FILE


def _flock_or_holder(fd: int) -> str | None:
    """Take the flock on ``fd`` without waiting: None, or the text of the holder that has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    return None


class RunLock:
    """The driver's hold on a run directory: a second live driver on the same work_dir is refused."""

    def __init__(self, run: Path):
        self.path = run / LOCK_FILE
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the lock and write this process into it; WorkDirInUseError while another driver holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            holder = _flock_or_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        if holder is not None:
            os.close(fd)
            raise WorkDirInUseError(
                f"work_dir {self.path.parent} is in use by another live pool ({holder or 'unknown'}); "
                "wait for it to finish, or give this pool another work_dir.")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def try_lock(run: Path) -> Iterator[str | None]:
    """Hold the run's lock while the block runs; yields None (no lock file, or taken), or who holds it
    (a live driver)."""
    try:
        fd = os.open(run / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        yield None
        return
    try:
        holder = _flock_or_holder(fd)
        yield None if holder is None else holder or "unknown"
    finally:
        os.close(fd)


def holder(run: Path) -> str | None:
    """Who holds the run's lock ("pid N on HOST"), or None when no driver is alive."""
    with try_lock(run) as who:
        return who
