"""The work_dir: where a pool's inputs, results, logs and journal live on the shared filesystem.

Layout (file count is O(1) in the number of tasks; ``incoming/`` holds only files of running chunks)::

    <run>/                 0700, one per pool, unique name (no makedirs race between pools)
      lock                 flock held by the live driver
      job.sh               fixed batch script: exec "$@" (no shell string is ever built from user data)
      batches/<NNNN>/      one per map
        meta.json  chunks.rec  journal.rec  results.rec  logs.rec (logs.rec: once a job wrote output)
        incoming/          c<chunk>.s<submission>.part|.done written by workers, job logs
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

from poolparty.errors import UnsafeWorkDirError, WorkDirInUseError

JOB_SCRIPT = '#!/bin/sh\n# poolparty batch script: runs its arguments as given (argv, never a shell string)\nexec "$@"\n'


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    """Write then rename, so a reader sees the old file or the whole new one."""
    import tempfile  # driver side: the worker on a node never needs it

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private(path: Path) -> None:
    """Refuse a directory that another user owns or that group/others may write: its pickles are code."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise UnsafeWorkDirError(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): poolparty will not load "
            "pickles from it. Use a work_dir of your own.")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeWorkDirError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}): poolparty will not "
            f"load pickles from it. Fix with: chmod 700 {path}")


def make_private_dir(path: Path) -> Path:
    """Create (or accept an existing) private directory; never fails because it already exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(path)
    return path


def new_run_dir(root: Path, prefix: str = "run") -> Path:
    """A fresh, unique, private run directory under ``root``: safe when many pools start at once."""
    root.mkdir(parents=True, exist_ok=True)  # exist_ok: dask-jobqueue#692 raced right here
    stamp = time.strftime("%Y%m%d-%H%M%S")
    import socket
    import tempfile

    host = socket.gethostname().split(".")[0]
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{stamp}-{host}-{os.getpid()}-", dir=root))  # 0700


class RunDir:
    """One pool's directory, locked against a second live driver."""

    def __init__(self, path: Path):
        self.path = make_private_dir(path)
        self._lock_fd: int | None = None
        self.job_script = self.path / "job.sh"
        self.batches = make_private_dir(self.path / "batches")

    def lock(self) -> None:
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise WorkDirInUseError(
                f"work_dir {self.path} is in use by another live pool ({holder or 'unknown'}); "
                "wait for it to finish, or give this pool another work_dir.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._lock_fd = fd
        if not self.job_script.exists():
            atomic_write(self.job_script, JOB_SCRIPT.encode(), mode=0o700)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def batch_dir(self, number: int) -> Path:
        return self.batches / f"{number:04d}"


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=1, sort_keys=True).encode())
