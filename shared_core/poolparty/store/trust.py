"""The trust door: a work_dir's pickles are code, so they are loaded only from directories that only
their owner can write. Every reader of pickles (the worker, ``status``/``logs``/``resume``, the driver)
checks here, and private directories are made here."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from poolparty.errors import UnsafeWorkDirError
from poolparty.store.layout import run_of_batch


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


def check_batch(batch: Path, incoming: Path) -> None:
    """What a worker checks before it loads a batch's inputs: the batch, its run and its incoming/."""
    check_private(batch)
    check_private(run_of_batch(batch))
    check_private(incoming)


def is_private(path: Path) -> bool:
    """Whether :func:`check_private` accepts ``path`` (readers that can do without the pickles)."""
    try:
        check_private(path)
    except UnsafeWorkDirError:
        return False
    return True
