"""Trust at the door: a planted or foreign work_root, a foreign run directory, and pid files that name
processes which are not this run's workers (a second Unix user is made here; the cases need root)."""
from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
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


# -- 2. resume / status / logs on a foreign run directory -------------------------------------------------
class _Planted:
    """A chunk input whose unpickling creates a file: stands for any code a crafted pickle runs."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_run(where: Path, marker: Path) -> Path:
    """A complete, resumable run directory whose one chunk runs code when unpickled."""
    from poolparty.payload import SharedFunction
    from poolparty.store.inputs import BatchFiles, encode_batch
    from poolparty.store.run_dir import RunDir
    from poolparty.store.run_info import write_run_info

    run = RunDir(where)
    write_run_info(run.path, job_name="pp-crafted", queue="local", python="/usr/bin/python3", max_running=1,
                   array=True, max_resubmissions=0, resources={}, max_result_size=None)
    BatchFiles(run.batch_dir(0)).write(encode_batch(SharedFunction(abs), [[(0, _Planted(str(marker)))]]), "map")
    return run.path


def _give_away(paths: list[Path], uid: int) -> None:
    for p in paths:
        os.chown(p, uid, uid, follow_symlinks=False)
        if p.is_dir():
            p.chmod(0o777)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolparty.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_resume_refuses_a_foreign_run_before_unpickling(tmp_path: Path, other_uid: int) -> None:
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path / "hers", marker)
    _give_away([p for p in [run, *run.rglob("*")]], other_uid)
    r = _cli("resume", str(run), cwd=tmp_path)
    assert r.returncode != 0 and f"belongs to uid {other_uid}" in r.stderr and str(run) in r.stderr, r.stderr
    assert not marker.exists()


def test_resume_refuses_a_foreign_batch_inside_our_own_run(tmp_path: Path, other_uid: int) -> None:
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path / "ours", marker)
    batch = run / "batches" / "0000"
    _give_away([batch, *batch.rglob("*")], other_uid)  # run/ is ours and 0700: only her batch is planted
    r = _cli("resume", str(run), cwd=tmp_path)
    assert not marker.exists()  # her pickle never ran
    assert r.returncode != 0 and str(batch) in r.stderr and "poolparty will not" in r.stderr, r.stderr


def test_logs_refuses_and_status_shows_whose_a_foreign_run_is(tmp_path: Path, other_uid: int) -> None:
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path / "hers", marker)
    _give_away([p for p in [run, *run.rglob("*")]], other_uid)
    r = _cli("logs", str(run), cwd=tmp_path)
    assert r.returncode != 0 and f"belongs to uid {other_uid}" in r.stderr, r.stderr
    r = _cli("status", "--no-query", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "not a private run of yours" in r.stdout and f"uid {other_uid} ({OTHER})" in r.stdout, r.stdout
    assert not marker.exists()


def test_the_store_door_refuses_pickles_of_a_foreign_batch(tmp_path: Path, other_uid: int) -> None:
    from poolparty.store.inputs import BatchFiles

    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path / "ours", marker)
    batch = run / "batches" / "0000"
    _give_away([batch], other_uid)
    with pytest.raises(poolparty.UnsafeWorkDirError, match=str(batch)):
        BatchFiles(batch).chunk_records()
    with pytest.raises(poolparty.UnsafeWorkDirError, match=str(batch)):
        BatchFiles(batch).read_chunk(0)
    assert not marker.exists()


# -- 3. pid files are claims, not orders --------------------------------------------------------------------
def _start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22: starttime


def _claim(run: Path, *procs: subprocess.Popen) -> None:
    """A local_queue.json naming ``procs`` as the run's running workers, with their real start times."""
    import json

    running = {f"L{i}_0": [p.pid, _start_ticks(p.pid), "pp-crafted"] for i, p in enumerate(procs, 1)}
    (run / "local_queue.json").write_text(json.dumps({"next_id": len(procs) + 1, "running": running}))


#: a process whose command line names what follows it (a shell might exec its last command and lose it)
NAP = ["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable, "-c",
       "import time; time.sleep(60)"]  # a system python: the other user may not enter the virtualenv


@pytest.fixture
def bystanders():
    """Live processes that are no workers of the run: killing their group would be the bug."""
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], **kw) -> subprocess.Popen:
        procs.append(subprocess.Popen(argv, start_new_session=True, **kw))
        return procs[-1]
    yield start
    for p in procs:
        p.kill()
        p.wait()


def _alive(p: subprocess.Popen) -> bool:
    time.sleep(0.3)
    return p.poll() is None


def test_cancel_and_adoption_leave_a_recorded_process_that_is_no_worker_alive(tmp_path: Path, bystanders) -> None:
    from poolparty.queues.local import LocalQueue

    run = _crafted_run(tmp_path / "ours", tmp_path / "marker")
    sleeper = bystanders(["sleep", "60"])  # ours, with its real start time, but not a poolparty worker
    _claim(run, sleeper)
    r = _cli("cancel", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _alive(sleeper)
    queue = LocalQueue()  # what a rerun with work_dir=run does: attach, then cancel its jobs on the way out
    try:
        queue.attach(run)
        assert queue.query("pp-crafted") == {}  # not adopted
        queue.cancel([], name="pp-crafted")
    finally:
        queue.close()
    assert _alive(sleeper)


def test_a_worker_like_process_of_another_user_or_another_run_is_never_signalled(
        tmp_path: Path, bystanders, other_uid: int) -> None:
    from poolparty.queues.local import recorded_workers

    run = _crafted_run(tmp_path / "ours", tmp_path / "marker")
    batch = str(run / "batches" / "0000")

    def as_other() -> None:
        os.setgid(other_uid)
        os.setuid(other_uid)
    hers = bystanders([*NAP, "poolparty.node.worker", batch], preexec_fn=as_other)
    other_run = bystanders([*NAP, "poolparty.node.worker", "/elsewhere/batches/0000"])
    mine = bystanders([*NAP, "poolparty.node.worker", batch])  # the one true claim
    _claim(run, hers, other_run, mine)
    assert list(recorded_workers(run, "pp-crafted")) == ["L3_0"]
    r = _cli("cancel", str(run), cwd=tmp_path)
    assert r.returncode == 0 and "cancelled 1 job(s)" in r.stdout, r.stdout + r.stderr
    assert _alive(hers) and _alive(other_run)
    assert mine.wait(timeout=10) != 0  # the run's own worker is still cancelled


def test_cancel_refuses_a_foreign_run_at_the_door(tmp_path: Path, bystanders, other_uid: int) -> None:
    run = _crafted_run(tmp_path / "hers", tmp_path / "marker")
    sleeper = bystanders([*NAP, "poolparty.node.worker", str(run / "batches" / "0000")])
    _claim(run, sleeper)
    _give_away([p for p in [run, *run.rglob("*")]], other_uid)
    r = _cli("cancel", str(run), cwd=tmp_path)
    assert r.returncode != 0 and f"belongs to uid {other_uid}" in r.stderr, r.stderr
    assert _alive(sleeper)


# -- a run directory swapped mid-run --------------------------------------------------------------------
def _slow(x: int) -> int:
    time.sleep(2)
    return x


def test_a_run_directory_swapped_mid_run_stops_the_run_having_read_nothing(tmp_path: Path) -> None:
    import shutil

    pool = poolparty.Pool(1, queue="local", work_root=tmp_path / "root", keep_work_dir=True)
    try:
        pending = pool.map_async(_slow, [1])
        run = pool.work_dir
        time.sleep(0.5)  # the job runs; now someone renames the run away and puts a copy in its place
        os.rename(run, tmp_path / "moved")
        shutil.copytree(tmp_path / "moved", run, symlinks=True)
        with pytest.raises(poolparty.UnsafeWorkDirError, match="was replaced while in use"):
            pending.get(timeout=60)  # it used to read on from the copy: here it waited for ever
    finally:
        pool.terminate()


def test_clean_keeps_a_foreign_run_untouched(tmp_path: Path, other_uid: int) -> None:
    parent = tmp_path / "root"
    parent.mkdir()
    hers = _crafted_run(parent / "run-hers", tmp_path / "marker")
    ours = _crafted_run(parent / "run-ours", tmp_path / "marker")
    _give_away([p for p in [hers, *hers.rglob("*")]], other_uid)
    before = sorted(p.name for p in hers.rglob("*"))
    r = _cli("clean", "--older-than", "0", str(parent), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept root/run-hers" in r.stdout and f"belongs to uid {other_uid}" in r.stdout, r.stdout
    assert sorted(p.name for p in hers.rglob("*")) == before  # not even a lock file was made there
    assert not ours.exists()
