"""``poolparty logs WORK_DIR [TASK]``: a task's traceback if it raised, then the job output (stdout and stderr together, as the scheduler
wrote it) of the chunk that ran a task, from the reduced store ``logs.rec``; while the chunk's job is
running, its live log file too."""
from __future__ import annotations

from pathlib import Path

import click

from poolparty.store.inputs import BatchFiles
from poolparty.store.results import read_logs
from poolparty.store.inspect import BatchState, read_run, task_traceback
from poolparty.cli.common import WORK_DIR, run_dir_argument, shown_path


@click.command()
@click.argument("work_dir", type=WORK_DIR)
@click.argument("task", type=int, required=False)
@click.option("--batch", "batch_number", type=int, help="Only this batch (default: every batch).")
@click.option("--list", "list_only", is_flag=True, help="List the stored logs instead of printing them.")
def logs(work_dir: Path, task: int | None, batch_number: int | None, list_only: bool) -> None:
    """Print the job log of the chunk that ran TASK (every stored log without TASK)."""
    run = run_dir_argument(work_dir)
    batches = [b for b in read_run(run, load_errors=False).batches
               if batch_number is None or b.number == batch_number]
    if batch_number is not None and not batches:
        raise click.ClickException(f"{shown_path(run)} has no batch {batch_number}")
    found = False
    for b in batches:
        chunks = [c for c in b.chunks if task is None or task in c.tasks]
        if task is not None and not chunks:
            continue
        if task is not None and not list_only:
            found |= _show_traceback(b, task)
        found |= _show(b, {c.chunk for c in chunks}, task, list_only)
    if task is not None and not any(task in c.tasks for b in batches for c in b.chunks):
        n = max((b.n_tasks for b in batches), default=0)
        raise click.ClickException(f"no task {task} in {shown_path(run)} (tasks are 0..{n - 1})" if n
                                   else f"no batch in {shown_path(run)}: nothing to show")
    if not found:
        click.echo("no log stored: a chunk's log is stored when its job ends, and a job whose tasks all "
                   "succeeded without output leaves none", err=True)


def _show_traceback(b: BatchState, task: int) -> bool:
    """The traceback of ``task`` if it raised, before its job's output."""
    text = task_traceback(BatchFiles(Path(b.path)), task)
    if text is None:
        return False
    click.echo(f"===== batch {b.number:04d} task {task} raised (remote traceback) =====")
    click.echo(text, nl=not text.endswith("\n"))
    return True


def _show(b: BatchState, chunks: set[int], task: int | None, list_only: bool) -> bool:
    """Print (or list) the stored logs of ``chunks`` of batch ``b``, then live logs; True if any."""
    found = False
    records = [(k, data) for k, data in read_logs(BatchFiles(Path(b.path))) if k.get("chunk") in chunks]
    runs: dict[int, int] = {}
    for key, data in records:
        chunk = key.get("chunk")
        runs[chunk] = runs.get(chunk, 0) + 1
        tasks = b.chunks[chunk].tasks
        what = f"task {task}" if task is not None else f"tasks {tasks[0]}..{tasks[-1]}" if len(tasks) > 1 \
            else f"task {tasks[0]}"
        cut = ", last 1 MiB only" if key.get("truncated") else ""
        header = (f"===== batch {b.number:04d} chunk {chunk} ({what}), job {key.get('element', '?')}, "
                  f"attempt {runs[chunk]}{cut} =====")
        found = True
        if list_only:
            click.echo(f"{header} {len(data)} bytes")
            continue
        click.echo(header)
        click.echo(data.decode("utf-8", "replace"), nl=not data.endswith(b"\n"))
    for c in b.chunks:
        if c.chunk in chunks and c.live_log:
            found = True
            header = f"===== batch {b.number:04d} chunk {c.chunk}, job {c.elements[-1]} (running): {c.live_log} ====="
            if list_only:
                click.echo(header)
                continue
            click.echo(header)
            try:
                click.echo(Path(c.live_log).read_text(errors="replace"), nl=False)
            except OSError:
                pass
    return found
