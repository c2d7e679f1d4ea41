"""One status query per poll per USER: four drivers (separate processes) of one user polling at once ask
the scheduler about as often as one driver does, on a fake SLURM and on the real SLURM and SGE
(calls counted by the fake, or by the PATH shim of conftest.install_call_counter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pool_status_calls

DRIVER = Path(__file__).parent / "drivers" / "map_driver.py"


def start_driver(q, work_dir: Path, markers: Path, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    timing = {**q.timing, "min_poll_interval": 1.0}  # = the drivers' polling_interval: a poll every second
    return subprocess.Popen(
        [sys.executable, str(DRIVER), "--queue", q.flavor, "--work-dir", str(work_dir), "--markers", str(markers),
         "--n", "1", "--seconds", str(seconds), "--max-running", "1", "--timing", json.dumps(timing)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def status_rate(q, drivers: int, seconds: float, tmp: Path) -> tuple[float, int, float]:
    """(status queries per second, queries, seconds between the first and the last) while ``drivers``
    drivers of this user each run a map of one task lasting ``seconds``."""
    before = len(pool_status_calls(q))
    env = dict(os.environ, TMPDIR=str(tmp / "tmp"))  # the user's shared state of this test alone
    (tmp / "tmp").mkdir(parents=True)
    procs = []
    for i in range(drivers):
        markers = tmp / f"markers{i}"
        markers.mkdir()
        procs.append(start_driver(q, tmp / f"wd{i}", markers, seconds, env))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip().splitlines()[-1] == "RESULT [0]"
    calls = pool_status_calls(q)[before:]
    span = calls[-1]["t"] - calls[0]["t"]
    alone = sum(1 for c in calls if any(a.startswith("--name=") for a in c["argv"]))
    print(f"{drivers} driver(s): {len(calls)} status queries ({alone} of one pool alone) in {span:.1f} s")
    return len(calls) / span, len(calls), span


@pytest.mark.parametrize("kind", ["fake-slurm", "slurm", "sge"])
def test_four_drivers_of_one_user_query_the_scheduler_about_as_often_as_one(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    seconds = 20.0 if q.real else 10.0
    one, one_calls, one_span = status_rate(q, 1, seconds, tmp_path / "one")
    four, four_calls, four_span = status_rate(q, 4, seconds, tmp_path / "four")
    ratio = four / one
    print(f"{kind}: 1 driver {one_calls} status queries in {one_span:.1f} s ({one:.2f}/s); 4 drivers "
          f"{four_calls} in {four_span:.1f} s ({four:.2f}/s); ratio 4:1 = {ratio:.2f}")
    assert ratio <= 1.5
