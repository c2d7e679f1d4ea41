"""``poolparty resume WORK_DIR``: finish an interrupted map without the program that started it.

The function and the inputs travel in the work_dir: each batch is rebuilt from
``batches/NNNN/{chunks.rec,meta.json}`` and submitted again through the
:class:`~poolparty.engine.engine.Engine` with the run's recorded options (``run.json``). The engine reuses
the stored results, adopts jobs still in the queue and submits only what is missing.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import click
import cloudpickle

from poolparty import config
from poolparty.store.inputs import BatchFiles, encode_batch
from poolparty.engine.handle import BatchHandle
from poolparty.engine.engine import Engine, EngineOptions
from poolparty.errors import CorruptWorkDirError, WorkDirMismatchError
from poolparty.payload import SharedFunction
from poolparty.api.progress import ProgressBar, wanted as progress_wanted
from poolparty.resources import Resources
from poolparty.retry import RetryPolicy
from poolparty.store.inspect import batch_dirs
from poolparty.store.journal import replay
from poolparty.store.run_info import read_run_info
from poolparty.queues import QUEUE_NAMES
from poolparty.queues.call_budget import DEFAULT_CALLS_PER_SECOND
from poolparty.cli.common import WORK_DIR, queue_kind, run_dir_argument, shown_path

RESUMABLE = ("map", "calls")  # Snakemake and Prefect batches are resumed by rerunning the workflow


def load_batch(number: int, files: BatchFiles) -> tuple[dict[str, Any], SharedFunction | None,
                                                        list[list[tuple[int, Any]]]]:
    """(meta, shared function, chunks of (task, payload)) as the engine was given them."""
    meta = files.read_meta()
    if meta.get("kind") not in RESUMABLE:
        raise click.ClickException(
            f"batch {number} was submitted by {meta.get('kind')!r}, not by a Pool or an Executor: rerun that "
            "workflow to resume it (it finds its finished jobs itself)")
    try:
        shared = files.read_shared()
        chunks = [list(zip(rec.key["tasks"], cloudpickle.loads(rec.payload)))
                  for rec in files.chunk_records()]
    except CorruptWorkDirError:  # a damaged input record: the error names the chunk, its tasks and the fix
        raise
    except Exception as e:
        raise click.ClickException(
            f"cannot load the function or inputs of batch {number} ({type(e).__name__}: {e}): run poolparty "
            "resume in the environment of the original program (same virtualenv, working directory and "
            "PYTHONPATH), so that the modules its function uses are importable") from e
    if len(chunks) != meta.get("n_chunks") or encode_batch(shared, chunks).fingerprint != meta.get("fingerprint"):
        raise WorkDirMismatchError(
            f"batch {number}'s inputs do not re-encode to what was submitted (they do not pickle the same way "
            "twice): rerun the original program with work_dir= this directory to resume it")
    return meta, shared, chunks


def first_resources(files: BatchFiles, default: Resources) -> Resources:
    """The resources the batch was first submitted with (used for chunks never submitted)."""
    return replay(files.journal).first_resources or default


def engine_options(run: Path, kind: str, max_running: int | None, python: str | None,
                   remove: bool) -> EngineOptions:
    """The run's recorded options (run.json), over the user's configuration for how to poll."""
    info = read_run_info(run)
    configured = config.load().values
    recorded_python = info.get("python")
    return EngineOptions(
        queue=kind, max_running=max_running or info.get("max_running"), work_dir=run, keep_work_dir=not remove,
        python_path=python or (recorded_python if recorded_python and os.path.isabs(recorded_python) else None),
        polling_interval=configured.get("polling_interval"),
        scheduler_timeout=configured.get("scheduler_timeout", 60.0),
        scheduler_calls_per_second=configured.get("scheduler_calls_per_second", DEFAULT_CALLS_PER_SECOND),
        verbose=configured.get("verbose", False),
        retry=RetryPolicy(max_resubmissions=info.get("max_resubmissions", 3)), array=info.get("array", True),
        resources=Resources.from_json(info["resources"]) if info.get("resources") else Resources(),
        max_result_size=info.get("max_result_size"))


def outcomes(handle: BatchHandle) -> list[tuple[bool, Any]]:
    """(ok, value or exception) per task; a task without a result carries the batch's error."""
    out = []
    for task in range(handle.n_tasks):
        try:
            out.append(handle.outcome(task))
        except KeyError:
            out.append((False, handle.error or RuntimeError(f"task {task} has no result")))
    return out


def write_output(path: Path, fmt: str, results: dict[int, list[tuple[bool, Any]]]) -> None:
    """One batch: a list in task order; several: {batch number: list}. Failed tasks hold their exception
    (pickle) or ``{"error": "Type: message"}`` (JSON)."""
    if fmt == "json":
        data: Any = {n: [v if ok else {"error": f"{type(v).__name__}: {v}"} for ok, v in r] for n, r in results.items()}
    else:
        data = {n: [v for _, v in r] for n, r in results.items()}
    if len(data) == 1:
        data = next(iter(data.values()))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "json":
            tmp.write_text(json.dumps(data, indent=1) + "\n")
        else:
            tmp.write_bytes(cloudpickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    except TypeError as e:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"the results cannot be written as JSON ({e}): use --format pickle") from None
    os.replace(tmp, path)


@click.command()
@click.argument("work_dir", type=WORK_DIR)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the results to this file (instead of printing them).")
@click.option("--format", "fmt", type=click.Choice(["pickle", "json"]),
              help="Format of --output (default: json for *.json, else pickle).")
@click.option("--queue", type=click.Choice(QUEUE_NAMES), help="Default: the run's (run.json).")
@click.option("--max-running", type=click.IntRange(min=1), help="Default: the run's.")
@click.option("--python", "python", help="Interpreter on the nodes (absolute path). Default: the run's.")
@click.option("--batch", "only", type=int, help="Resume only this batch.")
@click.option("--remove", is_flag=True, help="Remove the work_dir once everything finished cleanly.")
def resume(work_dir: Path, output: Path | None, fmt: str | None, queue: str | None, max_running: int | None,
           python: str | None, only: int | None, remove: bool) -> None:
    """Finish the interrupted maps of WORK_DIR and print (or save) their results."""
    run = run_dir_argument(work_dir)
    kind = queue_kind(run, queue)
    batches = [(n, f) for n, f in batch_dirs(run) if only is None or n == only]
    if not batches:
        raise click.ClickException(f"nothing to resume in {shown_path(run)}: no batch left "
                                   "(finished batches of a clean run are removed)")
    sys.path.insert(0, os.getcwd())  # as `python -m`: the program's own modules, for by-reference pickles
    loaded = [(n, f, *load_batch(n, f)) for n, f in batches]
    options = engine_options(run, kind, max_running, python, remove)
    engine = Engine(options)
    bar = ProgressBar(engine.progress, f"poolparty resume {engine.name}") if progress_wanted(None) else None
    engine.report_efficiency = bar is not None  # its last line summarises the report
    handles: dict[int, BatchHandle] = {}
    try:
        for number, files, meta, shared, chunks in loaded:
            handles[number] = engine.submit(shared, chunks, first_resources(files, options.resources),
                                            kind=meta["kind"], give_up_policy="fail_batch",
                                            number=number)  # the batch keeps its number, hence its directory
            if bar is not None:
                bar.track(handles[number])
        for handle in handles.values():
            handle.wait()
    except BaseException:
        engine.terminate("interrupted")
        raise
    finally:
        if bar is not None:
            bar.stop()
    engine.close()
    results = {n: outcomes(h) for n, h in handles.items()}
    failed = sum(1 for r in results.values() for ok, _ in r if not ok)
    if output is not None:
        write_output(output, fmt or ("json" if output.suffix == ".json" else "pickle"), results)
        click.echo(f"saved the results of {sum(map(len, results.values()))} task(s) to {output}", err=True)
    else:
        for number, r in results.items():
            for task, (ok, value) in enumerate(r):
                prefix = f"{number}:{task}" if len(results) > 1 else f"{task}"
                click.echo(f"{prefix}\t{value!r}" if ok else f"{prefix}\terror: {type(value).__name__}: {value}")
    if failed:
        first = next(v for r in results.values() for ok, v in r if not ok)
        raise click.ClickException(f"{failed} task(s) failed; the first: {type(first).__name__}: "
                                   f"{str(first).splitlines()[0] if str(first) else ''}")
    if not remove:
        click.echo(f"work_dir kept: {shown_path(run)} (poolparty clean, or --remove, deletes it)", err=True)

