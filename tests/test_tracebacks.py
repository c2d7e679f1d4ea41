"""A task's error names the user's file, line and source text in the caller's traceback, as
``multiprocessing`` shows it: functions travel by value with their own file name (not cloudpickle's
``<dynamic-code>``), and the remote traceback is the caught exception's ``__cause__``."""
from __future__ import annotations

import pytest

from user_project import PROJECT, run_script


def raising_line(module: str, marker: str) -> tuple[int, str]:
    """(line number, source text) of the line of ``module`` that carries ``marker``."""
    lines = (PROJECT / module).read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if marker in line)
    return number, lines[number - 1].split("#")[0].strip()


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_the_callers_traceback_names_the_users_file_line_and_source(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    out = run_script(q, tmp_path, "tracebacks")
    proj = tmp_path / "proj"
    expected = {"sibling": ("frag.py", "fragile", "# the raising line", "ValueError"),
                "script": ("main.py", "own_fragile", "# the script's raising line", "KeyError")}
    for how in ("map", "submit"):
        for where, (module, function, marker, error) in expected.items():
            caught = out[f"{how}_{where}"]
            assert caught["type"] == error and caught["cause"] == "RemoteTraceback", caught
            number, source = raising_line(module, marker)
            assert f'File "{proj / module}", line {number}, in {function}\n    {source}' in caught["text"], \
                caught["text"]
            assert "<dynamic-code>" not in caught["text"]
