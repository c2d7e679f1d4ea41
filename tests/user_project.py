"""Run the user's project of ``drivers/user_project`` as a real script: copied into a temporary directory
that is not on this process's ``sys.path``, started from another directory, on a queue under test."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).parent / "drivers" / "user_project"


def copy_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    shutil.copytree(PROJECT, proj)
    assert not any(Path(p).resolve() == proj.resolve() for p in sys.path if p)
    return proj


def run_script(q: Any, tmp_path: Path, what: str, timeout: float = 300) -> dict[str, Any]:
    """``main.py``'s RESULT (the script fails the test if it fails), run from ``tmp_path/elsewhere``."""
    proj = copy_project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, str(proj / "main.py"), q.flavor, json.dumps(q.timing), str(tmp_path / "runs"), what],
        cwd=elsewhere, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"the script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT "):])
