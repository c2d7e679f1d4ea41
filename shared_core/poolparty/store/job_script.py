"""The fixed script every job runs, and what its one line of its own means when a job never started.

The script runs its arguments as given (argv, never a shell string built from user data). Before it does, it
checks that the interpreter (``python_path``, its first argument) is an executable file on the node: a
path that exists on the login node but not on the compute nodes is the most common reason a job never
starts, and its exit status alone (127, or SLURM's ``NonZeroExitCode``) does not say so."""
from __future__ import annotations

import re
from pathlib import Path

#: the first words of the script's own line when the interpreter is missing on the node
INTERPRETER_MISSING = "poolparty: python_path"

JOB_SCRIPT = f"""#!/bin/sh
# poolparty batch script: runs its arguments as given (argv, never a shell string)
# a walltime warning (USR1/USR2) before the worker catches it must not kill the job: ignored until then
trap '' USR1 USR2
if [ ! -x "$1" ]; then
  echo "{INTERPRETER_MISSING} '$1' is not an executable file on node $(hostname)" >&2
  exit 127
fi
exec "$@"
"""

_LINE = re.compile(re.escape(INTERPRETER_MISSING) + r" '.*' is not an executable file on node \S*")
_HEAD_BYTES = 4096


def interpreter_missing(log: Path) -> str | None:
    """The script's line saying the job's interpreter was missing on its node, if the job's log has it."""
    try:
        with open(log, "rb") as f:
            head = f.read(_HEAD_BYTES).decode(errors="replace")
    except OSError:
        return None
    found = _LINE.search(head)
    return found.group(0).removeprefix("poolparty: ") if found else None
