"""What a poolparty job runs for one Snakemake job: Snakemake's own remote command line, either in a
child forked from the element's warm Snakemake process (:mod:`.element`) or as a command of its own,
or the ``--jobscript`` template filled in for the job."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

#: shell syntax that only a shell can run: such a command line is not run in a forked child
SHELL_TOKENS = frozenset({"&&", "||", ";", "|", "&", ">", "<", ">>", "2>", "2>&1"})


def snakemake_argv(command: str, python: str = sys.executable) -> Optional[list[str]]:
    """The arguments after ``<python> -m snakemake`` when ``command`` is exactly that (no prefix,
    precommand or suffix, and this interpreter), else None: it then needs a shell of its own."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    if len(tokens) < 3 or tokens[1:3] != ["-m", "snakemake"] or SHELL_TOKENS.intersection(tokens):
        return None
    if os.path.realpath(tokens[0]) != os.path.realpath(python):
        return None
    return tokens[3:]


def job_command(executor: Any, job: Any, workdir: Path, forked: bool) -> Any:
    """A :class:`poolparty.Call` of :func:`.element.run_job` (``forked``, when the command line allows),
    else a :class:`poolparty.ShellCommand` run in the workflow's working directory."""
    from poolparty import Call, ShellCommand

    if executor.is_default_jobscript:
        command = executor.format_job_exec(job)
        argv: Optional[Sequence[str]] = snakemake_argv(command) if forked else None
        if argv is not None:
            from snakemake_executor_plugin_poolparty.element import run_job

            return Call(run_job, (argv, str(workdir)))
        return ShellCommand(command, cwd=str(workdir))
    # a --jobscript template (e.g. one that loads modules): write it and run it
    path = executor.get_jobscript(job)
    executor.write_jobscript(job, path)
    return ShellCommand(["/bin/sh", path], cwd=str(workdir))
