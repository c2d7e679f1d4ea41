"""``poolparty report WORK_DIR``: the efficiency report of a run's batches (core-seconds allocated and
CPU-seconds used, peak memory and walltime against what was asked, resubmissions and why, a suggestion),
from ONE accounting call to the run's scheduler, or what the workers measured of themselves."""
from __future__ import annotations

from pathlib import Path

import click

from poolparty.engine.accounting import efficiency_report
from poolparty.queues import queue_class
from poolparty.store.inspect import batch_dirs
from poolparty.store.layout import job_name
from poolparty.store.run_info import read_run_info
from poolparty.store.trust import foreign_owner
from poolparty.cli.common import WORK_DIR, echo_json, queue_kind, run_dir_argument, scheduler_cli, shown_path


@click.command()
@click.argument("work_dir", type=WORK_DIR)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--queue", "queue_name", help="The run's queue, for a run.json from before it was recorded.")
def report(work_dir: Path, as_json: bool, queue_name: str | None) -> None:
    """How much of what the run in WORK_DIR asked for its jobs used, and what to ask for next time."""
    run = run_dir_argument(work_dir, trusted=False)  # reads records and JSON only, never a pickle
    kind = queue_kind(run, queue_name)
    name = read_run_info(run).get("job_name") or job_name(run)
    batches = [files for _, files in batch_dirs(run)]
    if not batches:
        raise click.ClickException(f"no batch in {shown_path(run)}: nothing was submitted, or every finished "
                                   "batch was removed (keep_work_dir=True keeps them for a report)")
    found = efficiency_report(batches, queue_class(kind), name, scheduler_cli())
    if as_json:
        echo_json({"run": str(run), "queue": kind, "job_name": name, "batches": len(batches),
                   "not_private": foreign_owner(run), **found.to_json()})
        return
    click.echo(f"run {shown_path(run)}: job name {name}, queue {kind}, {len(batches)} batch(es)")
    for line in found.lines():
        click.echo(line)
