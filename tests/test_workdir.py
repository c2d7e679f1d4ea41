"""The work_dir: race-free when many pools start at once, private, refused when others can write it."""
import multiprocessing
from pathlib import Path
import os
import stat
import subprocess
import sys

import pytest

import poolparty
from poolparty.store.run_dir import RunDir
from poolparty.store.trust import check_private


def _start_pool_and_map(root: str, n: int, barrier, out: str) -> None:
    barrier.wait()  # all 20 processes create their pools at the same moment
    with poolparty.Pool(queue="local", max_running=1, work_root=root) as pool:
        result = pool.map(abs, range(-n, 0), chunksize=n)
    Path(out).write_text(repr(result))


def test_twenty_pools_start_at_once_in_one_parent(tmp_path):
    root = tmp_path / "shared-parent"  # does not exist yet: all 20 race to create it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(20)
    procs = [ctx.Process(target=_start_pool_and_map, args=(str(root), 3, barrier, str(tmp_path / f"out{i}")))
             for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    codes = [p.exitcode for p in procs]
    assert codes == [0] * 20, codes
    assert [(tmp_path / f"out{i}").read_text() for i in range(20)] == ["[3, 2, 1]"] * 20
    assert list(root.iterdir()) == []  # each pool removed its own clean run dir, none collided


def test_run_dir_is_private(tmp_path):
    with poolparty.Pool(queue="local", work_root=tmp_path, keep_work_dir=True) as pool:
        pool.map(abs, [1])
        mode = stat.S_IMODE(os.stat(pool.work_dir).st_mode)
    assert mode == 0o700


def test_group_writable_work_dir_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(poolparty.UnsafeWorkDirError, match="chmod 700"):
        poolparty.Pool(queue="local", work_dir=d)


def test_worker_refuses_to_load_pickles_from_unsafe_dir(tmp_path):
    with poolparty.Pool(queue="local", work_root=tmp_path, keep_work_dir=True) as pool:
        pool.map(abs, [1])
        batch = next((pool.work_dir / "batches").iterdir())
    batch.chmod(0o777)  # someone could have swapped the pickles
    r = subprocess.run([sys.executable, "-m", "poolparty.node.worker", str(batch), "--sub", "9", "--chunk", "0"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "writable by group or others" in r.stderr


def test_second_live_driver_on_same_work_dir_is_refused(tmp_path):
    first = RunDir(tmp_path / "wd")
    first.lock()
    try:
        with pytest.raises(poolparty.WorkDirInUseError, match="in use"):
            poolparty.Pool(queue="local", work_dir=tmp_path / "wd")
    finally:
        first.unlock()


def test_check_private_accepts_own_0700(tmp_path):
    d = tmp_path / "p"
    d.mkdir(mode=0o700)
    check_private(d)
