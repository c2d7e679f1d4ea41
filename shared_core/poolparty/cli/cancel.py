"""``poolparty cancel WORK_DIR``: cancel every job of a run, by its job name (one scheduler call)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import click

from poolparty.store.layout import job_name
from poolparty.store.run_info import read_run_info
from poolparty.store.run_lock import holder as driver_of
from poolparty.queues import QUEUE_NAMES
from poolparty.cli.common import WORK_DIR, live, open_queue, query_jobs, queue_kind, run_dir_argument, shown_path


def _driver_pid(holder: str) -> tuple[int, str] | None:
    """``"pid 123 on host"`` (the lock file's text) -> (123, "host")."""
    words = holder.split()
    if len(words) == 4 and words[0] == "pid" and words[1].isdigit() and words[2] == "on":
        return int(words[1]), words[3]
    return None


def terminate_driver(run: Path, holder: str, wait: float) -> None:
    """SIGTERM the live driver (it cancels its own jobs on the way out) and wait for its lock."""
    who = _driver_pid(holder)
    if who is None or who[1] != socket.gethostname():
        raise click.ClickException(f"the driver ({holder}) is not on this host ({socket.gethostname()}): "
                                   "stop it there, then run poolparty cancel again")
    try:
        os.kill(who[0], signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and driver_of(run):
        time.sleep(0.2)
    if driver_of(run):
        raise click.ClickException(f"the driver (pid {who[0]}) still holds {shown_path(run)} after {wait:g} s")


@click.command()
@click.argument("work_dir", type=WORK_DIR)
@click.option("--queue", type=click.Choice(QUEUE_NAMES),
              help="The run's queue (default: from its run.json).")
@click.option("--stop-driver", is_flag=True,
              help="Also stop the live driver (SIGTERM, same host only); else it would resubmit.")
def cancel(work_dir: Path, queue: str | None, stop_driver: bool) -> None:
    """Cancel every job of the run in WORK_DIR (they all carry the run's job name)."""
    run = run_dir_argument(work_dir)
    kind = queue_kind(run, queue)
    name = read_run_info(run).get("job_name") or job_name(run)
    holder = driver_of(run)
    if holder and stop_driver:
        click.echo(f"stopping the driver ({holder})")
        terminate_driver(run, holder, 30.0)
        holder = None
    before = live(query_jobs(run, kind, name))
    adapter = open_queue(kind, run)
    try:
        adapter.cancel([], name=name)
    finally:
        adapter.close()
    click.echo(f"cancelled {len(before)} job(s) named {name} on {kind}"
               + (f": {', '.join(sorted(before)[:10])}{' ...' if len(before) > 10 else ''}" if before else ""))
    if holder:
        click.echo(f"warning: the run's driver is alive ({holder}); it treats cancelled jobs as infrastructure "
                   f"failures and resubmits them. Stop it, or run: poolparty cancel --stop-driver "
                   f"{shown_path(run)}", err=True)

