"""Run one tiny job to learn what a compute node sees: whether the work_root is on a filesystem shared
with the nodes, which Python runs there, and whether it imports poolparty. Used by ``poolparty doctor``.

The job is submitted like a real one (a one-element array through the adapter's own submission, same
job script, resources, environment export, log file in the run directory), and watched with the
adapter's own status query, so what fails here fails for real runs too; the result says whether the
status query saw the job, and in which states.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from poolparty import __version__
from poolparty.errors import PoolPartyError
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.base import ArrayRequest, QueueAdapter
from poolparty.resources import Resources
from poolparty.store.atomic import atomic_write
from poolparty.store.layout import JOB_SCRIPT_FILE
from poolparty.store.job_script import JOB_SCRIPT
from poolparty.store.run_dir import new_run_dir

#: what the probe job writes (a JSON report) in its run directory
PROBE_REPORT = "probe.json"

PROBE = r"""
import json, os, socket, sys
out = {"host": socket.gethostname(), "python": sys.executable, "version": sys.version.split()[0]}
try:
    import poolparty
    import cloudpickle
    out["poolparty"] = poolparty.__version__
    out["poolparty_path"] = os.path.dirname(poolparty.__file__)
except Exception as e:
    out["import_error"] = "%s: %s" % (type(e).__name__, e)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f)
os.replace(tmp, sys.argv[1])
"""


@dataclass
class ProbeResult:
    queue: str
    work_root: str
    python: str
    verdict: str  # ok | warn | fail
    message: str
    shared: bool | None = None  # None: the job never ran, so nobody knows
    imports_poolparty: bool | None = None
    node: dict[str, Any] | None = None  # what the job reported
    job: str | None = None
    log: str | None = None  # the job's output when it did not report
    seen: list[str] | None = None  # the states the status query reported for the job, in order

    def status_text(self) -> str:
        """What the status query saw, for doctor's report."""
        if not self.seen:
            return "never seen by the status query"
        return f"seen by the status query as {' -> '.join(self.seen)}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def probe_nodes(queue: QueueAdapter, work_root: Path, python: str, resources: Resources | None = None, *,
                timeout: float = 120.0, grace: float = 10.0, poll: float = 1.0) -> ProbeResult:
    """Submit the probe job from a fresh private directory under ``work_root`` and interpret what came back.
    ``grace``: how long after the job left the queue its files may take to appear (NFS caches)."""
    work_root = work_root.absolute()
    created_root = not work_root.exists()
    run = new_run_dir(work_root, prefix="doctor")
    request = _probe_request(run, python, resources or Resources(), queue.first_index)
    base = ProbeResult(queue.name, str(work_root), python, "fail", "")
    finished = False
    try:
        submitted = queue.submit(request, array=True)[0]
        base.job = submitted.elements[0]
        result, finished = _watch_probe(queue, request.name, run, base, timeout, grace, poll)
        return result
    except PoolPartyError as e:
        base.message = f"could not submit the probe job: {str(e).splitlines()[0]}"
        return base
    finally:
        if not finished and base.job is not None:
            try:
                queue.cancel([], name=request.name)
            except PoolPartyError:
                pass
        shutil.rmtree(run, ignore_errors=True)
        if created_root:
            try:
                work_root.rmdir()
            except OSError:
                pass


def _probe_request(run: Path, python: str, resources: Resources, first_index: int = 0) -> ArrayRequest:
    """The probe's files (the job script and the probe, files like the worker's inputs: they must be
    shared too) and its request: an array of one element, chunk 0, at the scheduler's first index."""
    script = run / JOB_SCRIPT_FILE
    atomic_write(script, JOB_SCRIPT.encode(), mode=0o700)
    atomic_write(run / "probe.py", PROBE.encode())
    return ArrayRequest(name=f"pp-doctor-{uuid.uuid4().hex[:8]}", part=ArrayPart(-first_index, (first_index,)),
                        throttle=1,
                        resources=resources, script=script,
                        worker_argv=(python, str(run / "probe.py"), str(run / PROBE_REPORT)), workdir=run,
                        log_dir=run)


def _watch_probe(queue: QueueAdapter, name: str, run: Path, base: ProbeResult, timeout: float, grace: float,
                 poll: float) -> tuple[ProbeResult, bool]:
    """Wait for the probe's report, or its job's end (then ``grace`` for its files), or ``timeout``;
    the flag says whether the job is over (else it is still queued and must be cancelled)."""
    element = str(base.job)
    marker, log = run / PROBE_REPORT, queue.log_path(run, element)
    deadline = time.monotonic() + timeout
    ended_at: float | None = None
    last_state = "submitted"
    base.seen = []
    while True:
        done = marker.exists()
        now = time.monotonic()
        status = queue.query(name).get(element)  # also once after the report: was the job seen at all?
        if status is not None and status.state.value not in base.seen[-1:]:
            base.seen.append(status.state.value)
        if done:
            return _reported(base, json.loads(marker.read_text())), True
        if status is None or not status.state.active:
            ended_at = ended_at or now
            if now - ended_at >= grace:
                return _silent(base, run, log, status.state.value if status else "gone from the queue"), True
        else:
            last_state = status.state.value + (f" ({status.reason})" if status.reason else "")
        if now > deadline:
            base.verdict = "warn"
            base.message = (f"the probe job {element} was still {last_state} after {timeout:g} s: cannot tell "
                            "whether the nodes share the work_root; try again with a longer --timeout")
            return base, False
        time.sleep(poll)


def _reported(r: ProbeResult, node: dict[str, Any]) -> ProbeResult:
    r.node, r.shared = node, True
    where = f"a job on {node.get('host', '?')} wrote to {r.work_root} (shared)"
    if node.get("import_error"):
        r.imports_poolparty = False
        r.message = (f"{where}, but Python on the nodes ({r.python}) cannot import poolparty: "
                     f"{node['import_error']}. Install poolparty into an environment the nodes see and set "
                     "python_path to its interpreter (or run the driver from that environment)")
        return r
    r.imports_poolparty = True
    r.verdict = "ok"
    r.message = f"{where}; Python {node.get('python')} {node.get('version')} imports poolparty {node.get('poolparty')}"
    if node.get("poolparty") != __version__:
        r.verdict = "warn"
        r.message += f", but the driver runs poolparty {__version__}: use the same version on both sides"
    return r


def _silent(r: ProbeResult, run: Path, log: Path, state: str) -> ProbeResult:
    """The job ended without a report: its log tells a node that saw the directory from one that did not."""
    try:
        r.log = log.read_text(errors="replace")[-2000:]
    except OSError:
        r.log = None
    if r.log is not None:
        r.shared = True
        r.message = (f"the probe job {r.job} ran ({state}) and its log reached {run}, but {r.python} wrote no "
                     f"report: is python_path an interpreter that exists on the nodes? Job log:\n{r.log.strip()}")
        return r
    r.shared = False
    r.message = (f"the work_root {r.work_root} is not shared with the compute nodes: the probe job {r.job} ended "
                 f"({state}) but nothing it wrote (report or log) is visible here. Use a work_root on a shared "
                 "filesystem (work_root= or POOLPARTY_WORK_ROOT), e.g. in your home or project directory")
    return r
