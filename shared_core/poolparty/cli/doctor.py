"""``poolparty doctor``: which schedulers answer and what they allow, and — by running one tiny job —
whether the work_root is shared with the compute nodes and whether Python there imports poolparty."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from poolparty import config
from poolparty import __version__
from poolparty.engine.engine import default_work_root
from poolparty.errors import PoolPartyError
from poolparty.cli.node_probe import ProbeResult, probe_nodes
from poolparty.payload import default_python
from poolparty.resources import Resources
from poolparty.queues import DEFAULT_QUEUE, QUEUE_NAMES, queue_class
from poolparty.queues.limits import SchedulerReport, as_json, report
from poolparty.cli.common import echo_json, open_queue

MARK = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[ -- ]"}


def _scheduler_lines(r: SchedulerReport) -> tuple[str, list[str]]:
    if not r.reachable:
        return "skip" if "not on PATH" in (r.problem or "") else "fail", [f"{r.kind}: {r.problem}"]
    limits = ", ".join(f"{k}={v}" for k, v in r.limits.items())
    lines = [f"{r.kind} answers: {limits}", *(f"  {note}" for note in r.notes())]
    for p in r.partitions:
        lines.append(f"  {r.partition_word} " + ", ".join(f"{k}={v}" for k, v in p.items()))
    for u in r.user_limits:
        lines.append(f"  your limits: {r.limit_text(u)}")
    if r.user_limits_note:
        lines.append(f"  your limits: {r.user_limits_note}")
    return "ok", lines


def _probe_resources(configured: dict[str, Any]) -> Resources:
    """Where the probe may run is decided by the configured partition/account/qos/extra; it needs little."""
    keys = ("partition", "account", "qos", "extra")
    return Resources.from_mapping({"walltime": 300, **{k: configured[k] for k in keys if k in configured}})


def probe_line(kind: str, message: str) -> str:
    """The probe's verdict in the words of its queue: a queue whose jobs run on this machine has no
    compute nodes and nothing to share a directory with, so its line speaks of this machine."""
    if not queue_class(kind).runs_on_this_host:
        return f"{kind} nodes: {message}"
    message = re.sub(r"^a job on \S+ wrote to (.*?) \(shared\)", r"a test job on this machine wrote to \1", message)
    for nodes_word, here in (("Python on the nodes", "Python"), ("an environment the nodes see", "an environment")):
        message = message.replace(nodes_word, here)
    return f"{kind} queue (jobs on this machine): " + message


def run_probe(kind: str, work_root: Path | None, python: str, timeout: float) -> ProbeResult:
    configured = config.load().values
    try:
        queue = open_queue(kind)
    except PoolPartyError as e:
        return ProbeResult(kind, str(work_root or configured.get("work_root") or "?"), python, "fail", str(e))
    root = work_root or Path(configured.get("work_root") or default_work_root(queue))
    try:
        return probe_nodes(queue, root, python, _probe_resources(configured), timeout=timeout)
    finally:
        queue.close()


@click.command()
@click.option("--queue", "queues", multiple=True, type=click.Choice(QUEUE_NAMES),
              help="Run the node check on this queue (repeatable). Default: every scheduler that answers "
                   "(the local queue if none does).")
@click.option("--work-root", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to check for sharing. Default: the configured work_root.")
@click.option("--python", "python", help="Interpreter on the nodes. Default: the configured python_path, "
                                         "else this one.")
@click.option("--no-job", is_flag=True, help="Skip the node check (submits nothing).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the probe job.")
@click.option("--json", "as_json_out", is_flag=True, help="Machine-readable output.")
def doctor(queues: tuple[str, ...], work_root: Path | None, python: str | None, no_job: bool, timeout: float,
           as_json_out: bool) -> None:
    """Check this machine: schedulers, their limits, and what the compute nodes see."""
    loaded = config.load()
    python = python or loaded.values.get("python_path") or default_python()
    out: dict[str, Any] = {"poolparty": __version__, "python": sys.executable,
                           "config_files": [str(f) for f in loaded.files], "schedulers": {}, "nodes": []}
    verdicts: list[str] = []
    lines: list[tuple[str, list[str]]] = [(
        "ok", [f"poolparty {__version__} on Python {sys.version.split()[0]} ({sys.executable}); configuration "
               f"files: {', '.join(map(str, loaded.files)) or 'none'} (see: poolparty config)"])]
    reachable = []
    for kind in QUEUE_NAMES:
        r = report(kind)
        if r is None:  # no scheduler to ask (the local queue)
            continue
        out["schedulers"][kind] = as_json(r)
        verdict, text = _scheduler_lines(r)
        if kind in queues and verdict != "ok":
            verdict = "fail"
        lines.append((verdict, text))
        verdicts.append(verdict)
        if r.reachable:
            reachable.append(kind)
    if not os.path.isabs(python):
        lines.append(("fail", [f"python_path={python!r} must be an absolute path to the interpreter on the nodes"]))
        verdicts.append("fail")
    elif not no_job:
        for kind in queues or tuple(reachable) or (DEFAULT_QUEUE,):
            if not as_json_out:
                click.echo(f"... running a probe job on {kind} (up to {timeout:g} s)", err=True)
            result = run_probe(kind, work_root, python, timeout)
            out["nodes"].append(result.to_json())
            lines.append((result.verdict, [probe_line(kind, result.message),
                                           f"probe job {result.job}: {result.status_text()}"]))
            verdicts.append(result.verdict)
    if as_json_out:
        out["ok"] = "fail" not in verdicts
        echo_json(out)
    else:
        for verdict, text in lines:
            click.echo(f"{MARK[verdict]} {text[0]}")
            for extra in text[1:]:
                click.echo(f"       {extra}")
    if "fail" in verdicts:
        sys.exit(1)
