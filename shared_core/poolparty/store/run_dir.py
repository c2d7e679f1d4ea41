"""A run directory's life on disk: made fresh (or taken over) and private, locked by its driver, its
batches listed, and removed again (by the engine after a clean run or by ``poolparty clean``), without
touching a user's own files in an explicit work_dir."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from poolparty.store.atomic import atomic_write
from poolparty.store.job_script import JOB_SCRIPT
from poolparty.store.layout import (BATCHES_DIR, JOB_SCRIPT_FILE, LOCK_FILE, META_FILE, RUN_DIR_PREFIX,
                                    RUN_FILES, RUN_INFO_FILE, batch_dir, parse_batch_dir_name)
from poolparty.store.run_lock import RunLock
from poolparty.store.trust import check_run, make_private_dir



def new_run_dir(root: Path, prefix: str = RUN_DIR_PREFIX) -> Path:
    """A fresh, unique, private run directory under ``root``: safe when many pools start at once."""
    make_private_dir(root)  # 0700 whatever the umask; a planted, foreign or shared root is refused
    stamp = time.strftime("%Y%m%d-%H%M%S")
    import socket
    import tempfile

    host = socket.gethostname().split(".")[0]
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{stamp}-{host}-{os.getpid()}-", dir=root))  # 0700


class RunDir:
    """One pool's directory, locked against a second live driver."""

    def __init__(self, path: Path):
        self.path = make_private_dir(path)
        self.job_script = self.path / JOB_SCRIPT_FILE
        self.batches = make_private_dir(self.path / BATCHES_DIR)
        check_run(self.path)  # a run taken over: its batches are read back, so they pass the door too
        self._lock = RunLock(self.path)

    def lock(self) -> None:
        """Take the run (WorkDirInUseError if a live driver has it) and write its job script."""
        self._lock.take()
        if not self.job_script.exists():
            atomic_write(self.job_script, JOB_SCRIPT.encode(), mode=0o700)

    def unlock(self) -> None:
        self._lock.release()

    def batch_dir(self, number: int) -> Path:
        return batch_dir(self.path, number)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / RUN_INFO_FILE).is_file() or
                              ((path / JOB_SCRIPT_FILE).is_file() and (path / BATCHES_DIR).is_dir()))


def complete_batches(run: Path) -> list[tuple[int, Path]]:
    """(number, directory) of every batch whose inputs are complete (its meta.json is written), in order."""
    try:
        entries = sorted(os.listdir(run / BATCHES_DIR))
    except FileNotFoundError:
        return []
    out = []
    for name in entries:
        number, path = parse_batch_dir_name(name), run / BATCHES_DIR / name
        if number is not None and (path / META_FILE).is_file():
            out.append((number, path))
    return out


def remove_run_dir(run: Path, *, ignore_errors: bool = False) -> None:
    """Remove what poolparty put in the run (the lock last: ``clean`` holds it while the rest goes),
    then the directory if nothing else is left. ``ignore_errors``: as :func:`shutil.rmtree` (the engine,
    closing, must not fail on the way out; ``clean`` must not say it removed a run it did not)."""
    for name in RUN_FILES:
        p = run / name
        if name == LOCK_FILE:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=ignore_errors)
        else:
            p.unlink(missing_ok=True)
    (run / LOCK_FILE).unlink(missing_ok=True)
    try:
        run.rmdir()
    except OSError:
        pass  # the user's own files are kept
