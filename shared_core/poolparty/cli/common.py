"""What several subcommands share: opening a run's queue, asking it about the run's jobs, output."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from poolparty.queues import QUEUE_NAMES, make_queue, queue_class
from poolparty.queues.base import QueueAdapter
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.states import JobStatus
from poolparty.store.inspect import NotARunError, is_run_dir
from poolparty.store.run_info import read_run_info
from poolparty.store.trust import check_run

WORK_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def run_dir_argument(path: Path, *, trusted: bool = True) -> Path:
    """A run directory given on the command line, made absolute; a clear error if it is not one, and
    (``trusted``, every command but ``status``) UnsafeWorkDirError unless the door accepts it."""
    path = path.absolute()
    if not is_run_dir(path):
        hint = ""
        if (path / "batches").is_dir() or any(is_run_dir(c) for c in _children(path)):
            hint = " (it holds run directories: pass one of them, e.g. from `ls`)"
        raise NotARunError(f"{path} is not a poolparty work_dir{hint}")
    if trusted:
        check_run(path)  # before any file in it is read: pickles are code, pid files are orders
    return path


def _children(path: Path) -> list[Path]:
    try:
        return [c for c in path.iterdir() if c.is_dir()][:50]
    except OSError:
        return []


def queue_kind(run: Path, given: str | None) -> str:
    """The run's queue: ``--queue`` if given, else what ``run.json`` recorded."""
    kind = given or read_run_info(run).get("queue")
    if not kind:
        raise click.UsageError(f"{run} has no run.json (made by an older poolparty): say which queue "
                               f"it used with --queue {'|'.join(QUEUE_NAMES)}")
    return kind


def scheduler_cli(timeout: float = 30.0) -> SchedulerCLI:
    """A few retries: a command-line user would rather hear that the scheduler does not answer."""
    return SchedulerCLI(timeout=timeout, attempts=3, backoff_base=0.5)


def open_queue(kind: str, run: Path | None = None, timeout: float = 30.0) -> QueueAdapter:
    """The adapter of ``kind``; the local queue is attached to ``run`` to adopt its running workers."""
    queue = make_queue(kind, scheduler_cli(timeout))
    if run is not None:
        queue.attach(run)
    return queue


def query_jobs(run: Path, kind: str, name: str) -> dict[str, JobStatus]:
    """The run's jobs still known to its queue, asked without its driver (see ``QueueAdapter.query_run``)."""
    return queue_class(kind).query_run(run, name, scheduler_cli())


def live(states: dict[str, JobStatus]) -> dict[str, JobStatus]:
    """Only the jobs still pending, held or running."""
    return {k: v for k, v in states.items() if v.state.active}


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=1, sort_keys=True, default=str))


def when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "?"


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)
