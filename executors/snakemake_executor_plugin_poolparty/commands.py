"""What a poolparty job runs for one Snakemake job: Snakemake's own remote command line, or the
``--jobscript`` template filled in for the job."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def job_command(executor: Any, job: Any, workdir: Path) -> Any:
    """A :class:`poolparty.ShellCommand` run in the workflow's working directory."""
    from poolparty import ShellCommand

    if executor.is_default_jobscript:
        return ShellCommand(executor.format_job_exec(job), cwd=str(workdir))
    # a --jobscript template (e.g. one that loads modules): write it and run it
    path = executor.get_jobscript(job)
    executor.write_jobscript(job, path)
    return ShellCommand(["/bin/sh", path], cwd=str(workdir))
