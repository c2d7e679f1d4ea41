"""``poolparty status WORK_DIR``: chunks by phase (the engine's :class:`~poolparty.phases.ChunkPhase`),
attempts, job ids and failures of a run, from its journal and result store (plus one scheduler query
for the jobs still queued)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from poolparty.errors import PoolPartyError
from poolparty.phases import ChunkPhase
from poolparty.queues import QUEUE_NAMES, queue_class
from poolparty.store.inspect import CANCELLED, BatchState, RunState, read_run
from poolparty.store.layout import LOGS_FILE, RESULTS_FILE, run_of_batch
from poolparty.store.trust import foreign_owner
from poolparty.cli.common import WORK_DIR, echo_json, live, query_jobs, run_dir_argument, shown_path, when


#: the phases in the order status lists them, and their words (as ChunkState.state holds them)
PHASES = (ChunkPhase.DONE, ChunkPhase.FAILED, ChunkPhase.QUEUED, ChunkPhase.WAITING)
DONE, FAILED, QUEUED, WAITING = (p.value for p in PHASES)


def collect(run: Path, query: bool) -> tuple[RunState, dict[str, Any]]:
    """The run as read from disk, and what the scheduler says about its queued jobs."""
    state = read_run(run)
    scheduler: dict[str, Any] = {"queried": False, "jobs": {}, "error": None}
    if query and state.queue and any(c.state == QUEUED for b in state.batches for c in b.chunks):
        try:
            jobs = query_jobs(run, state.queue, state.job_name)
            scheduler.update(queried=True, jobs={k: v.state.value for k, v in live(jobs).items()})
        except PoolPartyError as e:
            scheduler["error"] = str(e).splitlines()[0]
    return state, scheduler


def summary(state: RunState, scheduler: dict[str, Any]) -> dict[str, Any]:
    """Per-state counts of the whole run (the ``--json`` output adds them to the run's state)."""
    chunks = Counter(c.state for b in state.batches for c in b.chunks)
    jobs = Counter(scheduler["jobs"].values())
    return {
        "tasks": sum(b.n_tasks for b in state.batches),
        "tasks_done": sum(c.tasks_done for b in state.batches for c in b.chunks),
        "tasks_failed": sum(len(b.failures) for b in state.batches),
        "chunks": {**{p.value: chunks.get(p.value, 0) for p in PHASES}, CANCELLED: chunks.get(CANCELLED, 0)},
        "jobs_in_scheduler": dict(jobs),
        "attempts": sum(c.attempts for b in state.batches for c in b.chunks),
        "resubmitted_chunks": sum(1 for b in state.batches for c in b.chunks if c.resubmissions),
    }


@click.command()
@click.argument("work_dir", type=WORK_DIR)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-query", is_flag=True, help="Do not ask the scheduler about queued jobs.")
@click.option("--all-failures", is_flag=True, help="List every failure (default: the first 10 per batch).")
def status(work_dir: Path, as_json: bool, no_query: bool, all_failures: bool) -> None:
    """Chunks by state, attempts, job ids and failures of the run in WORK_DIR."""
    run = run_dir_argument(work_dir, trusted=False)  # reads JSON only from a run that is not private
    foreign = foreign_owner(run)
    state, scheduler = collect(run, not no_query)
    counts = summary(state, scheduler)
    if as_json:
        echo_json({**state.to_json(), "summary": counts, "scheduler": scheduler, "not_private": foreign})
        return
    click.echo(f"run {shown_path(state.path)}: job name {state.job_name}, queue {state.queue or '?'}")
    if foreign:
        click.echo(f"warning: not a private run of yours, so no pickle was loaded from it (failure texts "
                   f"not shown); resume, logs and cancel refuse it: {foreign}")
    states = {c.state for b in state.batches for c in b.chunks}
    if state.driver:
        click.echo(f"driver: alive ({state.driver})")
    elif states & {QUEUED, WAITING, CANCELLED}:
        click.echo(f"driver: none (interrupted); finish it with: poolparty resume {shown_path(state.path)}")
    elif FAILED in states:
        click.echo(f"driver: none (ended with failures); retry them with: poolparty resume {shown_path(state.path)}")
    else:
        click.echo("driver: none (finished)")
    if scheduler["error"]:
        click.echo(f"scheduler: not asked about queued jobs ({scheduler['error']})")
    if not state.batches:
        click.echo("no batch: nothing was submitted, or every finished batch was removed")
    # a live local driver keeps its not-yet-started workers in memory only: they are pending, not lost
    on_this_host = state.queue in QUEUE_NAMES and queue_class(state.queue).runs_on_this_host
    unseen = "pending" if on_this_host and state.driver else "not in the queue"
    for b in state.batches:
        _echo_batch(b, scheduler, all_failures, unseen)
    c = counts["chunks"]
    click.echo(f"total: {counts['tasks_done']}/{counts['tasks']} tasks done, {counts['tasks_failed']} raised; "
               f"chunks {c[DONE]} done, {c[FAILED]} failed, {c[QUEUED]} queued, {c[CANCELLED]} cancelled, "
               f"{c[WAITING]} waiting")


def _echo_batch(b: BatchState, scheduler: dict[str, Any], all_failures: bool, unseen: str) -> None:
    done = sum(c.tasks_done for c in b.chunks)
    click.echo(f"\nbatch {b.number:04d} ({b.kind}, created {when(b.created)}): {done}/{b.n_tasks} tasks done "
               f"in {len(b.chunks)} chunk(s)")
    queued = [c for c in b.chunks if c.state == QUEUED]
    line = (f"  chunks: {b.count(ChunkPhase.DONE)} done, {b.count(ChunkPhase.FAILED)} failed, {len(queued)} queued, "
            f"{sum(1 for c in b.chunks if c.state == CANCELLED)} cancelled (by the driver: resume submits them again), "
            f"{b.count(ChunkPhase.WAITING)} waiting")
    if scheduler["queried"] and queued:
        where = Counter(scheduler["jobs"].get(c.elements[-1], unseen) for c in queued)
        order = ["running", "pending", "held", "suspended", "requeued"]
        ranked = sorted(where.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
        line += " (queued: " + ", ".join(f"{n} {s}" for s, n in ranked) + ")"
    click.echo(line)
    if b.damaged:
        click.echo(f"  {RESULTS_FILE}: {len(b.damaged)} damaged region(s) ({sum(n for _, n in b.damaged)} bytes) "
                   "skipped (a task whose only result was there is recomputed by a rerun or poolparty resume)")
    attempts = sum(c.attempts for c in b.chunks)
    resubmitted = [c for c in b.chunks if c.resubmissions]
    click.echo(f"  attempts: {attempts} job(s) submitted, {len(resubmitted)} chunk(s) resubmitted")
    job_ids = sorted({j for c in b.chunks for j in c.job_ids}, key=lambda j: (len(j), j))
    if job_ids:
        shown = ", ".join(job_ids[:12]) + (f" ... ({len(job_ids)} in all)" if len(job_ids) > 12 else "")
        click.echo(f"  job ids: {shown}")
    limit = None if all_failures else 10
    gave_up = [c for c in b.chunks if c.state == FAILED]
    for c in gave_up[:limit]:
        click.echo(f"  chunk {c.chunk} (tasks {_span(c.tasks)}) gave up after {c.attempts} attempt(s): {c.reason}")
        click.echo(f"    log: {shown_path(b.path)}/{LOGS_FILE} chunk {c.chunk}; "
                   f"poolparty logs {shown_path(run_of_batch(Path(b.path)))} {c.tasks[0]} --batch {b.number}")
    for f in b.failures[:limit]:
        click.echo(f"  task {f.task} (chunk {f.chunk}) raised {f.error}")
        click.echo(f"    log: {shown_path(b.path)}/{LOGS_FILE} chunk {f.chunk}; "
                   f"poolparty logs {shown_path(run_of_batch(Path(b.path)))} {f.task} --batch {b.number}")
    hidden = max(0, len(gave_up) - 10) + max(0, len(b.failures) - 10) if limit else 0
    if hidden:
        click.echo(f"  ... and {hidden} more failure(s): --all-failures lists them")
    for c in queued[:3]:
        if c.live_log:
            click.echo(f"  log of queued chunk {c.chunk} (job {c.elements[-1]}): {shown_path(c.live_log)}")


def _span(tasks: list[int]) -> str:
    return f"{tasks[0]}..{tasks[-1]}" if len(tasks) > 1 else str(tasks[0]) if tasks else "-"
