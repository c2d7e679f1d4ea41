"""``poolparty clean [--older-than 7d] PARENT``: retention for old run directories under PARENT (a
``work_root``). A run is never touched while its driver holds its lock or while the scheduler still
lists one of its jobs; only the files poolparty made are removed (see ``store.layout.RUN_FILES``)."""
from __future__ import annotations

import time
from pathlib import Path

import click

from poolparty.errors import ConfigurationError, PoolPartyError
from poolparty.queues import QUEUE_NAMES
from poolparty.resources import parse_duration
from poolparty.store.inspect import last_activity
from poolparty.store.layout import job_name
from poolparty.store.run_dir import is_run_dir, remove_run_dir
from poolparty.store.run_info import read_run_info
from poolparty.store.run_lock import try_lock
from poolparty.store.trust import foreign_owner
from poolparty.cli.common import live, query_jobs, shown_path


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``90min``, ``0`` -> seconds."""
    if text.strip() in ("0", "0s", "0d"):
        return 0.0
    try:
        return float(parse_duration(text) or 0)
    except ConfigurationError:
        raise click.BadParameter(f"{text!r} is not an age; write e.g. 7d, 12h, 90min") from None


def jobs_left(run: Path) -> tuple[list[str], str | None]:
    """The run's jobs the scheduler still lists, or why that could not be learnt (then: keep the run)."""
    info = read_run_info(run)
    name = info.get("job_name") or job_name(run)
    kinds = [info["queue"]] if info.get("queue") else list(QUEUE_NAMES)
    left: list[str] = []
    for kind in kinds:
        try:
            left += sorted(live(query_jobs(run, kind, name)))
        except ConfigurationError:  # a scheduler that is not installed here cannot hold the jobs
            if info.get("queue"):
                return [], f"cannot ask {kind} about its jobs (its commands are not on PATH)"
        except PoolPartyError as e:
            return [], f"cannot ask {kind} about its jobs: {str(e).splitlines()[0]}"
    return left, None


@click.command()
@click.argument("parent", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--older-than", "older_than", default="7d", show_default=True, metavar="AGE",
              help="Remove runs whose last activity is older than AGE (7d, 12h, 90min, 0).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def clean(parent: Path, older_than: str, dry_run: bool) -> None:
    """Remove old run directories under PARENT (a work_root), keeping live ones."""
    limit = time.time() - parse_age(older_than)
    parent = parent.absolute()
    runs = [parent] if is_run_dir(parent) else sorted(c for c in parent.iterdir() if is_run_dir(c))
    removed = kept = 0
    for run in runs:
        refused = foreign_owner(run)  # the door: nothing is read, locked or removed in a run not ours
        if refused:
            click.echo(f"kept {shown_path(run)}: {refused}")
            kept += 1
            continue
        active = last_activity(run)
        if active > limit:
            continue
        age_days = (time.time() - active) / 86400
        with try_lock(run) as holder:
            if holder:
                click.echo(f"kept {shown_path(run)}: its driver is alive ({holder})")
                kept += 1
                continue
            left, unknown = jobs_left(run)
            if unknown or left:
                why = unknown or f"{len(left)} job(s) still queued: {', '.join(left[:5])}"
                click.echo(f"kept {shown_path(run)}: {why}")
                kept += 1
                continue
            if dry_run:
                click.echo(f"would remove {shown_path(run)} (idle {age_days:.1f} days)")
            else:
                remove_run_dir(run)
                click.echo(f"removed {shown_path(run)} (idle {age_days:.1f} days)")
            removed += 1
    click.echo(f"{'would remove' if dry_run else 'removed'} {removed} run(s), kept {kept} in use; "
               f"{len(runs) - removed - kept} newer than {older_than}")
