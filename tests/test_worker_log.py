"""A successful, silent job removes its own log file; every other job's log stays for the driver."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import sys
from pathlib import Path
from poolparty.node.worker import drop_quiet_log
if sys.argv[2]:
    print(sys.argv[2], flush=True)
drop_quiet_log(Path(sys.argv[1]).resolve())
"""


def run_job(log: Path, incoming: Path, says: str = "") -> None:
    with open(log, "wb") as out:  # as the scheduler does: stdout and stderr to one -o file
        subprocess.run([sys.executable, "-c", CODE, str(incoming), says], stdout=out, stderr=out, check=True)


@pytest.mark.parametrize("says, inside, kept", [("", True, False), ("hello", True, True), ("", False, True)])
def test_only_an_empty_log_in_incoming_is_removed(tmp_path, says, inside, kept):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    log = (incoming if inside else tmp_path) / "j1_0.log"
    run_job(log, incoming, says)
    assert log.exists() == kept


def test_a_log_with_separate_stderr_is_left_alone(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    log, err = incoming / "j1_0.log", incoming / "j1_0.err"
    with open(log, "wb") as out, open(err, "wb") as e:
        subprocess.run([sys.executable, "-c", CODE, str(incoming), ""], stdout=out, stderr=e, check=True)
    assert log.exists() and err.exists()


def test_a_claimed_chunk_runs_even_when_its_output_cannot_be_captured(monkeypatch, capfd):
    import tempfile

    from poolparty.node.capture import OutputCapture

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_space)
    with OutputCapture(True) as captured:
        print("still here", flush=True)
    assert captured.data == b""
    out, err = capfd.readouterr()
    assert "still here" in out and "cannot capture a claimed chunk's output" in err
