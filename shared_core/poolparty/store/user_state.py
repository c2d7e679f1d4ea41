"""The per-user state every poolparty process of one user on one host shares: the scheduler status
snapshot and the call budget (queues/shared_status.py, queues/call_budget.py). It lives in a private
0700 directory of the user (``$TMPDIR/poolparty-<uid>-scheduler``), holds JSON only (never a pickle),
and each file is read only after its owner, mode and type are checked (a planted file or symlink in a
shared /tmp is refused, never followed).

Layout::

    $TMPDIR/poolparty-<uid>-scheduler/      0700
      status-<scope>.json   the last status snapshot of one scheduler: {"taken": wall time, "pools": ...}
      status-<scope>.lock   flock held by the process refreshing it
      calls.json            the token bucket of submissions and cancels: {"tokens", "last", "busy_until"}
      calls.lock            flock held while the bucket is read and updated
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from poolparty.errors import UnsafeWorkDirError
from poolparty.store.atomic import atomic_write
from poolparty.store.trust import make_private_dir, owner_name

STATUS_SNAPSHOT = "status-{scope}.json"
STATUS_LOCK = "status-{scope}.lock"
CALL_BUDGET = "calls.json"
CALL_BUDGET_LOCK = "calls.lock"


def user_state_dir() -> Path:
    """The user's private directory on this host (made 0700 on first use; a foreign or planted one is
    refused with UnsafeWorkDirError)."""
    import tempfile

    return make_private_dir(Path(tempfile.gettempdir()) / f"poolparty-{os.getuid()}-scheduler")


def status_paths(directory: Path, scope: str) -> tuple[Path, Path]:
    """(snapshot, lock) of the scheduler ``scope`` (a short hash naming one scheduler instance)."""
    return directory / STATUS_SNAPSHOT.format(scope=scope), directory / STATUS_LOCK.format(scope=scope)


def budget_paths(directory: Path) -> tuple[Path, Path]:
    return directory / CALL_BUDGET, directory / CALL_BUDGET_LOCK


def check_private_file(path: Path, fd: int) -> None:
    """Refuse an open file another user owns, that group/others may read or write, or that is not a
    regular file (the open used O_NOFOLLOW: a symlink never gets this far)."""
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or mode & 0o077:
        raise UnsafeWorkDirError(
            f"{path} (owner {owner_name(st.st_uid)}, mode {mode:o}) is not a private file of yours: poolparty "
            f"will not read it. Fix: remove it (rm {path}); poolparty makes a new one")


def read_private_json(path: Path) -> Any:
    """The JSON in ``path`` if it is a private regular file of ours; None when it does not exist or is
    torn (a reader that finds nothing usable asks the scheduler itself)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeWorkDirError(f"{path} is a symlink: poolparty does not follow it. Fix: rm {path}") from None
        raise
    with os.fdopen(fd, "rb") as f:
        check_private_file(path, fd)
        try:
            return json.load(f)
        except ValueError:
            return None


def write_private_json(path: Path, value: Any) -> None:
    """Replace ``path`` whole (0600): a reader sees the old snapshot or the new one, never half of one."""
    atomic_write(path, json.dumps(value, separators=(",", ":")).encode(), mode=0o600, sync=False)


class FileLock:
    """An flock on a private lock file, taken within a bound or not at all. The kernel drops it when its
    holder dies (even SIGKILLed), so a crashed process never blocks another; a stopped or hung one
    delays another by at most the bound."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, within: float) -> bool:
        """True once held; False when another process still holds it after ``within`` seconds."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            check_private_file(self.path, fd)
            deadline = time.monotonic() + within
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._fd, fd = fd, -1
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.02)
        finally:
            if fd >= 0:
                os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
