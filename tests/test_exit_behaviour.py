"""Work submitted and never waited for when the driver leaves the interpreter: a normal end finishes it
(as concurrent.futures does at interpreter exit), an uncaught exception or SIGTERM cancels it (no orphaned
job); either way it is never dropped silently. And, as concurrent.futures, submit() from an atexit
handler raises RuntimeError."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import wait_until

DRIVER = Path(__file__).parent / "drivers" / "exit_driver.py"
KINDS = ["local", "fake-slurm"]


def run_driver(q, how: str, tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[str], Path]:
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), how, "--queue", q.flavor, "--markers", str(markers), "--work-root",
         str(tmp_path / "runs"), "--seconds", str(seconds), "--timing", json.dumps(q.timing)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    return proc, markers


class _PoolRef:
    def __init__(self, name: str, work_dir: str):
        self.engine = type("E", (), {"name": name, "work_dir": Path(work_dir)})()


def pools(proc: subprocess.Popen[str]) -> list[_PoolRef]:
    line = proc.stdout.readline()
    assert line.startswith("POOLS "), line
    words = line.split()[1:]
    return [_PoolRef(words[0], words[1]), _PoolRef(words[2], words[3])]


@pytest.mark.parametrize("kind", KINDS)
def test_a_normal_exit_finishes_the_work_submitted_and_not_waited_for(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    proc, markers = run_driver(q, "finish", tmp_path, seconds=1.0)
    refs = pools(proc)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    names = {"submit-0", "submit-1", "apply"}
    assert {p.name for p in markers.glob("done-*")} == {f"done-{n}" for n in names}, err
    assert "waiting for pool" in err
    for ref in refs:
        assert not q.live_jobs(ref)
        assert not ref.engine.work_dir.exists()  # finished clean: nothing kept


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["raise", "sigterm"])
def test_an_exit_by_exception_or_sigterm_cancels_the_work(kind, how, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    proc, markers = run_driver(q, how, tmp_path, seconds=60.0)
    refs = pools(proc)
    if how == "sigterm":
        line = proc.stdout.readline()
        assert line.startswith("WAITING "), line
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    reason = "RuntimeError" if how == "raise" else "SIGTERM"
    assert f"interpreter exit by {reason} with work in flight: cancelling pool" in err, err
    for ref in refs:
        wait_until(lambda: not q.live_jobs(ref), 60, "no job of the pool left in the queue")
    assert not list(markers.glob("done-*"))


def test_submit_from_an_atexit_handler_raises_runtimeerror_as_concurrent_futures(tmp_path):
    """The standard library's own check (test_submit_after_interpreter_shutdown), run on both."""
    script = textwrap.dedent("""
        import atexit, sys
        @atexit.register
        def run_last():
            try:
                t.submit(id, None)
            except RuntimeError:
                print("runtime-error")
                raise
        kind = sys.argv[1]
        if kind == "poolparty":
            import poolparty
            t = poolparty.Executor(2, queue="local", work_root=sys.argv[2])
        else:
            from concurrent.futures import ProcessPoolExecutor
            t = ProcessPoolExecutor(2)
        t.submit(id, 42).result()
    """)
    for kind in ("stdlib", "poolparty"):
        proc = subprocess.run([sys.executable, "-c", script, kind, str(tmp_path)], capture_output=True,
                              text=True, timeout=120, env=dict(os.environ))
        assert "RuntimeError: cannot schedule new futures after" in proc.stderr, \
            (kind, proc.stderr)
        assert proc.stdout.strip() == "runtime-error", (kind, proc.stdout)
