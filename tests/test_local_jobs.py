"""A local job ends whole (its descendants too, even in their own session), and a driver killed mid-run
leaves no worker past its walltime: neither an orphan with no driver nor one a rerun adopts and waits for."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import poolparty
from poolparty.queues.local import LocalQueue
from poolparty.queues.states import JobState
from poolparty.store.layout import local_queue_state

from conftest import wait_until

DRIVER = Path(__file__).parent / "drivers" / "hang_driver.py"
WALLTIME = 4
JOB_ENV = "POOLPARTY_LOCAL_JOB"  # what ties a local job's processes to it (poolparty.queues.local_procs)


def start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def spawn_escapee(pid_file: str, then_sleep: float = 0.0) -> int:
    """A task that leaves a child in its own session (``setsid sleep 300``) behind, its pid in pid_file."""
    child = subprocess.Popen(["setsid", "sleep", "300"], stdin=subprocess.DEVNULL)
    Path(pid_file + ".tmp").write_text(str(child.pid))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(then_sleep)
    return child.pid


class Watched:
    """A pid read from a file, with its start time: alive only while it is that same process."""

    def __init__(self, pid_file: Path, timeout: float = 60):
        wait_until(pid_file.exists, timeout, f"{pid_file} to be written")
        self.pid = int(pid_file.read_text())
        self.ticks = start_ticks(self.pid)
        self.seen = time.monotonic()

    def alive(self) -> bool:
        return self.ticks is not None and start_ticks(self.pid) == self.ticks

    def cleanup(self) -> None:
        if self.alive():  # our own leftover: never leave it to the rest of the suite
            os.kill(self.pid, signal.SIGKILL)


def test_a_finished_jobs_escaped_child_ends_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    with poolparty.Pool(max_running=1, queue="local", work_dir=tmp_path / "wd") as pool:
        [pid] = pool.map(spawn_escapee, [str(pid_file)])
    child = Watched(pid_file)
    assert child.pid == pid
    try:
        wait_until(lambda: not child.alive(), 10, "the job's setsid child to end with its job")
    finally:
        child.cleanup()


def test_a_terminated_jobs_escaped_child_ends_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    pool = poolparty.Pool(max_running=1, queue="local", work_dir=tmp_path / "wd")
    pool.apply_async(spawn_escapee, (str(pid_file), 600))
    child = Watched(pid_file)
    try:
        pool.terminate()
        wait_until(lambda: not child.alive(), 10, "the cancelled job's setsid child to end")
    finally:
        child.cleanup()


def start_driver(work_dir: Path, pid_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(DRIVER), "--work-dir", str(work_dir), "--pid-file", str(pid_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def kill_driver_mid_task(tmp_path: Path) -> Watched:
    driver = start_driver(tmp_path / "wd", tmp_path / "worker.pid")
    try:
        worker = Watched(tmp_path / "worker.pid")
    finally:
        driver.kill()
        driver.communicate()
    assert worker.alive(), "the worker should outlive the SIGKILLed driver for a while"
    return worker


def test_an_orphan_ends_at_its_walltime_without_any_driver(tmp_path):
    worker = kill_driver_mid_task(tmp_path)
    try:
        limit = WALLTIME + 8 - (time.monotonic() - worker.seen)
        wait_until(lambda: not worker.alive(), limit, "the orphaned worker to end after its walltime")
    finally:
        worker.cleanup()


def test_a_rerun_after_a_crash_does_not_wait_for_ever_on_the_orphan(tmp_path):
    worker = kill_driver_mid_task(tmp_path)
    (tmp_path / "worker.pid").unlink()
    rerun = start_driver(tmp_path / "wd", tmp_path / "worker.pid")
    try:
        out, err = rerun.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        rerun.kill()
        out, err = rerun.communicate()
        raise AssertionError(f"the rerun hung on the adopted orphan:\n{err[-2000:]}") from None
    finally:
        worker.cleanup()
        if (tmp_path / "worker.pid").exists():
            Watched(tmp_path / "worker.pid").cleanup()
    assert "RETRY_LIMIT" in out or "RESULT" in out, err[-2000:]
    assert not worker.alive()


@pytest.mark.parametrize("limit, state", [("walltime", JobState.TIMEOUT), ("memory", JobState.OUT_OF_MEMORY)])
def test_an_adopted_element_keeps_its_limits(tmp_path, limit, state):
    """The limits recorded with an element in local_queue.json are enforced by the driver that adopts it,
    the escapee of its job included (a driver started after a crash; the worker's own deadline aside)."""
    pid_file = tmp_path / "child.pid"
    marker = f"L1_0@{uuid.uuid4().hex}"  # unique, as each driver makes its own
    worker = subprocess.Popen(
        # its command line names a worker of this run: only such a recorded pid is adopted (trust)
        [sys.executable, "-c", f"import test_local_jobs as t; t.spawn_escapee({str(pid_file)!r}, 300)",
         "poolparty.node.worker", str(tmp_path / "batches" / "0001")],
        start_new_session=True, env={**os.environ, JOB_ENV: marker, "PYTHONPATH": os.pathsep.join(sys.path)})
    child = Watched(pid_file)
    try:
        deadline, memory = (time.time() - 1, None) if limit == "walltime" else (time.time() + 300, 1)
        record = [worker.pid, start_ticks(worker.pid), "job", deadline, memory, marker]
        local_queue_state(tmp_path).write_text(json.dumps({"next_id": 2, "running": {"L1_0": record}}))
        queue = LocalQueue()
        try:
            queue.attach(tmp_path)
            wait_until(lambda: queue.query("job")["L1_0"].state is state, 15, f"the adopted element's {state}")
        finally:
            queue.close()
        wait_until(lambda: worker.poll() is not None and not child.alive(), 10, "the adopted job to end whole")
    finally:
        worker.kill()
        worker.wait()
        child.cleanup()
