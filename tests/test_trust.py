"""Trust at the door: a planted or foreign work_root, a foreign run directory, and pid files that name
processes which are not this run's workers (a second Unix user is made here; the cases need root)."""
from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import poolparty

OTHER = "ppother"


@pytest.fixture(scope="session")
def other_uid() -> int:
    """The uid of a second Unix user (made here when missing): the 'other user' of a shared machine."""
    if os.getuid() != 0:
        pytest.skip("needs root to create a second Unix user and files owned by it (CI runs as root)")
    try:
        return pwd.getpwnam(OTHER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", OTHER], check=True)
        return pwd.getpwnam(OTHER).pw_uid


@pytest.fixture
def sticky_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 1777 TMPDIR, as on a shared login node, used for the default work_root."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("POOLPARTY_WORK_ROOT", raising=False)
    return tmp


def _as_other(path: Path, uid: int) -> None:
    os.chown(path, uid, uid, follow_symlinks=False)


# -- 1. a planted or redirected work_root --------------------------------------------------------------
def test_work_root_precreated_by_another_user_is_refused(sticky_tmp: Path, other_uid: int) -> None:
    planted = sticky_tmp / f"poolparty-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    _as_other(planted, other_uid)
    with pytest.raises(poolparty.UnsafeWorkDirError) as err:
        poolparty.Pool(queue="local")
    assert str(planted) in str(err.value) and f"uid {other_uid}" in str(err.value)
    assert os.listdir(planted) == []  # nothing created in her directory


def test_work_root_planted_as_symlink_is_refused(sticky_tmp: Path, other_uid: int) -> None:
    hers = sticky_tmp / "eve"
    hers.mkdir()
    hers.chmod(0o777)
    _as_other(hers, other_uid)
    link = sticky_tmp / f"poolparty-{os.getuid()}"
    link.symlink_to(hers)
    _as_other(link, other_uid)
    with pytest.raises(poolparty.UnsafeWorkDirError, match="symlink") as err:
        poolparty.Pool(queue="local")
    assert str(link) in str(err.value)
    assert os.listdir(hers) == []


def test_work_root_of_ours_but_world_writable_is_refused(sticky_tmp: Path) -> None:
    root = sticky_tmp / f"poolparty-{os.getuid()}"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(poolparty.UnsafeWorkDirError, match=f"chmod 700 {root}"):
        poolparty.Pool(queue="local")
    assert os.listdir(root) == []


def test_work_roots_are_made_0700_whatever_the_umask(sticky_tmp: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with poolparty.Pool(queue="local") as pool:
            assert pool.map(abs, [-1]) == [1]
        with poolparty.Pool(queue="local", work_root=tmp_path / "a" / "b", keep_work_dir=True) as pool:
            assert pool.map(abs, [-2]) == [2]
            run = pool.work_dir
    finally:
        os.umask(old)
    for d in (sticky_tmp / f"poolparty-{os.getuid()}", tmp_path / "a", tmp_path / "a" / "b", run,
              run / "batches"):
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700, d
