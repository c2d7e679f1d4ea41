"""A failure the caller has received is the caller's: no warning, nothing left behind. A run directory
is kept only when work is left to resume, and then one line says where and what to run."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import poolparty

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def nap(x: int) -> int:
    time.sleep(30)
    return x


def poolparty_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "poolparty" and r.levelno >= logging.WARNING]


def test_a_raised_map_says_nothing_and_leaves_nothing(tmp_path, caplog):
    with poolparty.Pool(2, queue="local", work_root=tmp_path) as pool:
        with pytest.raises(ValueError, match="three"):
            pool.map(fail_on_three, range(6), chunksize=1)
        assert pool.map(fail_on_three, [0, 1]) == [0, 1]
        pool.close()
        pool.join()
    assert poolparty_lines(caplog) == []
    assert not Path(pool.work_dir).exists() and os.listdir(tmp_path) == []


def test_retrieved_future_exceptions_say_nothing_and_leave_nothing(tmp_path, caplog):
    with poolparty.Executor(2, queue="local", work_root=tmp_path) as ex:
        futures = [ex.submit(fail_on_three, x) for x in (3, 3, 1)]
        assert [type(f.exception()).__name__ for f in futures[:2]] == ["ValueError"] * 2
        assert futures[2].result() == 1
    assert poolparty_lines(caplog) == []
    assert os.listdir(tmp_path) == []


def test_unfinished_work_keeps_the_run_and_says_so_once(tmp_path, caplog):
    pool = poolparty.Pool(2, queue="local", work_root=tmp_path)
    pool.map_async(nap, range(4), chunksize=1)
    pool.map_async(nap, range(4), chunksize=1)
    time.sleep(1)
    pool.terminate()
    kept = [line for line in poolparty_lines(caplog) if "kept" in line]
    assert len(kept) == 1, poolparty_lines(caplog)
    assert f"`poolparty status {pool.work_dir}`" in kept[0] and Path(pool.work_dir).is_dir()


def test_the_executor_example_prints_no_noise(tmp_path):
    env = {**os.environ, "POOLPARTY_WORK_ROOT": str(tmp_path / "runs"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "executor_as_completed.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "11 results, errors: {7: 'parameter 7 is unstable'}\n" and proc.stderr == ""
    assert sorted(os.listdir(tmp_path)) == ["runs"] and os.listdir(tmp_path / "runs") == []
