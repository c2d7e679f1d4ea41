"""The trust door: a work_dir's pickles are code, so they are loaded only from directories that only
their owner can write; every way into a work_dir (driver, worker, ``status``/``logs``/``resume``/``cancel``)
checks here before it reads anything, and private directories are made here."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from poolparty.errors import UnsafeWorkDirError
from poolparty.store.layout import BATCHES_DIR, INCOMING_DIR, parse_batch_dir_name, run_of_batch


def owner_name(uid: int) -> str:
    """``uid 1001 (eve)``: how an error names a directory's owner."""
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_private(path: Path) -> None:
    """Refuse a symlink, a directory another user owns, or one that group/others may write (never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeWorkDirError(f"{path} does not exist (it vanished, or was moved away while in use)") from None
    found = f"owner {owner_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):o}"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeWorkDirError(
            f"{path} is a symlink ({found}, to {os.readlink(path)}): poolparty does not follow symlinks into "
            f"a work_dir (someone may have planted it). Fix: remove it, or configure the real path "
            f"(work_root/work_dir = {os.path.realpath(path)}) if it is your own")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeWorkDirError(f"{path} is not a directory ({found}): remove it or choose another work_dir")
    if st.st_uid != os.getuid():
        raise UnsafeWorkDirError(
            f"{path} belongs to {owner_name(st.st_uid)}, not to you (uid {os.getuid()}; {found}): poolparty will "
            "not use it nor load pickles from it. Fix: use a work_root/work_dir of your own (if someone "
            f"created {path} before you, remove it or set work_root= elsewhere)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeWorkDirError(
            f"{path} is writable by group or others ({found}): poolparty will not use it nor load pickles "
            f"from it. Fix with: chmod 700 {path}")


def make_private_dir(path: Path) -> Path:
    """Create (or accept an existing) private directory, and every missing parent, 0700 whatever the umask."""
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            check_private(p)  # made at the same moment: by another of our pools, or planted
            continue
        os.chmod(p, 0o700, follow_symlinks=False)  # the umask may have taken bits away, never add them
    check_private(path)
    return path


def check_run(run: Path) -> None:
    """The door every reader of a run passes before it reads anything: the run, batches/, each batch
    and its incoming/ are ours, private and no symlinks."""
    check_private(run)
    batches = run / BATCHES_DIR
    if not os.path.lexists(batches):
        return
    check_private(batches)
    for name in sorted(os.listdir(batches)):
        if parse_batch_dir_name(name) is not None:
            check_private(batches / name)
            if os.path.lexists(batches / name / INCOMING_DIR):
                check_private(batches / name / INCOMING_DIR)


def check_batch(batch: Path, incoming: Path) -> None:
    """What a worker checks before it loads a batch's inputs: the batch, its run and its incoming/."""
    check_private(run_of_batch(batch))
    check_private(run_of_batch(batch) / BATCHES_DIR)
    check_private(batch)
    check_private(incoming)


def foreign_owner(run: Path) -> str | None:
    """Whose a run is when :func:`check_run` refuses it (``status`` shows a foreign run, loading nothing)."""
    try:
        check_run(run)
    except UnsafeWorkDirError as e:
        return str(e)
    return None


def is_private(path: Path) -> bool:
    """Whether :func:`check_run` accepts the run ``path`` (readers that can do without the pickles)."""
    return foreign_owner(path) is None


def identity(path: Path) -> tuple[int, int]:
    """(device, inode) of ``path`` itself (never followed): what a directory is held by while in use."""
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def check_identity(pinned: dict[Path, tuple[int, int]]) -> None:
    """Refuse to read on when a directory in use was replaced (renamed away, another put in its place);
    one that is gone is left to the caller (nothing can be read from it)."""
    for path, expected in pinned.items():
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) != expected:
            raise UnsafeWorkDirError(
                f"{path} was replaced while in use (now owner {owner_name(st.st_uid)}, mode "
                f"{stat.S_IMODE(st.st_mode):o}, another directory than the one poolparty made): the run stops "
                "without reading anything from it. Find out who moved it; rerun in a private work_dir")
