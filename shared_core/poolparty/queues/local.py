"""The embedded default queue: array elements run as local subprocesses, through the same worker
entry point, job script and work_dir as on a cluster, with a running limit, walltime and memory
enforcement, cancel, and adoption of still-running jobs after the driver was killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from poolparty.errors import ConfigurationError
from poolparty.queues.base import ArrayRequest, QueueAdapter, Submitted
from poolparty.queues.local_procs import JOB_ENV, end_jobs, signal_if_same, start_ticks
from poolparty.queues.states import JobState, JobStatus
from poolparty.resources import Resources
from poolparty.store.atomic import atomic_write
from poolparty.store.layout import BATCHES_DIR, local_queue_state

if TYPE_CHECKING:
    from poolparty.queues.cli import SchedulerCLI

INDEX_ENV = "POOLPARTY_ARRAY_INDEX"
KEEP_FINISHED = 300.0  # like SLURM's MinJobAge
KILL_WAIT = 2.0
#: past its walltime, a worker no driver ended ends its own job (--deadline) this much later: the driver's
#: kill, which reports TIMEOUT, comes first
ORPHAN_GRACE = KILL_WAIT + 1.0


@dataclass
class _Element:
    element: str
    array: str
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: Path
    walltime: int | None
    memory: int | None
    marker: str = ""  # JOB_ENV's value: what ties an escaped descendant to this job
    state: JobState = JobState.PENDING
    proc: subprocess.Popen[bytes] | None = None  # None for an element adopted from a killed driver
    pid: int | None = None
    ticks: int | None = None  # the worker's start time, telling it from a recycled pid
    deadline: float | None = None  # absolute wall-clock end of its walltime
    started: float = 0.0
    ended: float = 0.0
    kill_state: JobState | None = None
    warning_lead: int | None = None  # seconds before its walltime the worker gets SIGUSR2 (as from SLURM)
    warned: bool = False

    def record(self) -> list[Any]:
        """What ``local_queue.json`` keeps of a running element, for a driver that adopts it."""
        return [self.pid, self.ticks, self.name, self.deadline, self.memory, self.marker]

    @classmethod
    def adopted(cls, element: str, saved: list[Any]) -> "_Element":
        """A running element recorded by an earlier driver (3 fields in files written before deadlines)."""
        pid, ticks, name, deadline, memory, marker = (list(saved) + [None, None, ""])[:6]
        return cls(element, element.split("_")[0], name, [], {}, "", Path(os.devnull), None, memory,
                   marker or "", JobState.RUNNING, pid=pid, ticks=ticks, deadline=deadline)

    def overdue(self, now: float) -> bool:
        """Past its walltime: by the monotonic clock if this driver started it, else by its deadline."""
        if self.proc is not None:
            return self.walltime is not None and now - self.started > self.walltime
        return self.deadline is not None and time.time() > self.deadline

    def warning_due(self, now: float) -> bool:
        """Its walltime warning is due and was not sent (only to a worker this driver started)."""
        return (not self.warned and self.proc is not None and self.walltime is not None
                and self.warning_lead is not None and now - self.started > self.walltime - self.warning_lead)



WORKER_MODULES = (b"poolparty.node.worker", b"poolparty.worker")


def is_our_worker(pid: int, ticks: int | None, run_dir: Path) -> bool:
    """Whether a pid recorded in ``local_queue.json`` is a claim to honour: our uid, the recorded start
    time, and the command line of a poolparty worker of this run (a pid file is a claim, not an order)."""
    if type(pid) is not int or pid <= 0 or ticks is None or start_ticks(pid) != ticks:
        return False
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    batches = [os.fsencode(run_dir / BATCHES_DIR) + b"/", os.fsencode(os.path.realpath(run_dir / BATCHES_DIR)) + b"/"]
    return any(a in WORKER_MODULES for a in argv) and any(
        a.startswith(tuple(batches)) or (a.startswith(b"/") and os.path.realpath(a).startswith(batches[1]))
        for a in argv)  # the run as the driver spelled it, or the same directory by another path


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def element_argv(request: ArrayRequest, index: int, *, array: bool) -> list[str]:
    """The command of one element: the job script with the worker's arguments, as sbatch would run it."""
    if array:
        args = [*request.worker_argv, "--offset", str(request.part.offset), "--index-env", INDEX_ENV]
    else:
        args = [*request.worker_argv, "--chunk", str(request.part.offset + index)]
    return ["/bin/sh", str(request.script), *args]


def ended_state(returncode: int, killed_as: JobState | None) -> JobState:
    """How an element that exited is reported: as what it was killed for, else by its exit code."""
    return killed_as or (JobState.COMPLETED if returncode == 0 else JobState.FAILED)


class LocalQueue(QueueAdapter):
    name = "local"
    index_env = INDEX_ENV
    first_index = 0
    result_grace = 1.0
    vanish_grace = 2.0
    min_poll_interval = 0.2
    default_polling_interval = 2.0
    result_check_interval = 0.02
    batching_window = 0.02
    runs_on_this_host = True

    def default_max_running(self) -> int:
        return os.cpu_count() or 1

    def default_work_root(self) -> Path:
        return Path(tempfile.gettempdir()) / f"poolparty-{os.getuid()}"

    def check_interpreter(self, python: str) -> None:
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ConfigurationError(
                f"python_path={python!r} is not an executable file on this machine, where the local queue runs "
                "its jobs: give the path of an installed interpreter (by default poolparty uses the driver's "
                "own, sys.executable)")

    @classmethod
    def from_cli(cls, cli: "SchedulerCLI") -> "LocalQueue":
        return cls()  # no scheduler commands: the queue is this process

    @classmethod
    def query_run(cls, run_dir: Path, name: str, cli: "SchedulerCLI") -> dict[str, JobStatus]:
        """The run's workers recorded in ``local_queue.json`` that are still alive (read only, never
        rewritten; the ones not yet started live in the driver's memory only)."""
        return {element: JobStatus(JobState.RUNNING, f"pid {pid}")
                for element, pid in recorded_workers(run_dir, name).items()}

    @classmethod
    def translate_workflow(cls, given: Mapping[str, Any], fields: dict[str, Any],
                           base: Resources) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Only cpus, memory, walltime and gpus mean something here: no partition, account, qos or flags."""
        return {**fields, "partition": None, "account": None, "qos": None}, ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._elements: dict[str, _Element] = {}
        self._throttle: dict[str, int] = {}
        self._token = uuid.uuid4().hex[:12]  # makes the job markers of this driver unique
        self._next_id = 1
        self._state_file: Path | None = None
        self._run_dir: Path | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._launcher, name="poolparty-local-queue", daemon=True)
        self._thread.start()

    def attach(self, run_dir: Path) -> None:
        self._state_file = local_queue_state(run_dir)
        self._run_dir = run_dir
        try:
            saved = json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            saved = {}
        with self._lock:
            self._next_id = saved.get("next_id", 1)
            for element, record in saved.get("running", {}).items():
                e = _Element.adopted(element, record)
                if e.pid is not None and is_our_worker(e.pid, e.ticks, run_dir):  # ours: not recycled, not planted
                    self._elements[element] = e

    def max_array_index(self) -> int | None:
        return None

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        out: list[Submitted] = []
        with self._lock:
            groups = [request.part.indices] if array else [[i] for i in request.part.indices]
            for indices in groups:
                array_id = f"L{self._next_id}"
                self._next_id += 1
                sub = Submitted(array_id)
                self._throttle[array_id] = request.throttle if array else 1
                for index in indices:
                    element = f"{array_id}_{index}"
                    env = dict(os.environ)
                    env[INDEX_ENV] = str(index)
                    env["POOLPARTY_JOB_ID"] = element
                    env[JOB_ENV] = marker = f"{element}@{self._token}"
                    self._elements[element] = _Element(
                        element, array_id, request.name, element_argv(request, index, array=array), env,
                        str(request.workdir), self.log_path(request.log_dir, element),
                        request.resources.walltime, request.resources.memory, marker,
                        warning_lead=request.warning_lead)
                    sub.elements[request.part.offset + index] = element
                out.append(sub)
            self._save()
        self._wake.set()
        return out

    def query(self, name: str) -> dict[str, JobStatus]:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, e in self._elements.items()
                        if not e.state.active and now - e.ended > KEEP_FINISHED]:
                del self._elements[key]
            return {k: JobStatus(e.state, "adopted" if e.proc is None and e.state.active else "")
                    for k, e in self._elements.items() if e.name == name}

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        ids = set(job_ids)
        with self._lock:
            for e in self._elements.values():
                if (e.element in ids or e.array in ids or (name is not None and e.name == name)) and e.state.active:
                    self._kill(e, JobState.CANCELLED)
            self._save()

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        with self._lock:
            self._throttle[job_id] = throttle
        return True

    def close(self) -> None:
        """Stop the launcher; reap workers that are only exiting after their result was written."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        deadline = time.monotonic() + KILL_WAIT + 3
        with self._lock:
            for e in self._elements.values():
                if e.proc is not None:
                    try:
                        e.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        _signal_group(e.proc.pid, signal.SIGKILL)
                        e.proc.wait()
            # the jobs this driver started end whole, also those the stopped launcher did not reap
            end_jobs([e.marker for e in self._elements.values() if e.argv and e.pid is not None])

    # -- the embedded scheduler ----------------------------------------------------------------
    def _kill(self, e: _Element, state: JobState) -> None:
        if e.state is JobState.PENDING:
            e.state, e.ended = state, time.monotonic()
            return
        if e.pid is not None and e.kill_state is None:
            e.kill_state = state
            if e.ticks is None or start_ticks(e.pid) != e.ticks:
                return  # already gone: the next reap ends what is left of the job
            _signal_group(e.pid, signal.SIGTERM)
            end_jobs([e.marker], [e.pid], signal.SIGTERM)  # escapees in their own session too
            timer = threading.Timer(KILL_WAIT, _end_job, (e.pid, e.ticks, e.marker))
            timer.daemon = True
            timer.start()

    def _launcher(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                changed = self._reap_and_enforce()
                changed |= self._start_pending()
                if changed:
                    self._save()
                busy = any(e.state in (JobState.PENDING, JobState.RUNNING) for e in self._elements.values())
            self._wake.wait(0.02 if busy else 0.5)  # submit() wakes an idle launcher at once
            self._wake.clear()

    def _reap_and_enforce(self) -> bool:
        """Note the ended elements and end what they left behind; enforce walltime and memory, also on
        adopted elements (an adopted one that ended by itself vanishes: its results tell how it went)."""
        now, ended = time.monotonic(), []
        for e in list(self._elements.values()):
            if e.state is not JobState.RUNNING:
                continue
            rc = e.proc.poll() if e.proc is not None else (
                None if start_ticks(e.pid or 0) == e.ticks else -1)
            if rc is not None:
                if e.proc is None and e.kill_state is None:
                    del self._elements[e.element]
                e.state, e.ended, e.proc = ended_state(rc, e.kill_state), now, None
                ended.append(e.marker)
            elif e.kill_state is None:
                if e.overdue(now):
                    self._kill(e, JobState.TIMEOUT)
                elif e.warning_due(now):  # the worker itself, which the job script exec'd into
                    e.warned = True
                    signal_if_same(e.pid or 0, e.ticks, signal.SIGUSR2)
                elif e.memory is not None and _rss_bytes(e.pid or 0) > e.memory:
                    self._kill(e, JobState.OUT_OF_MEMORY)
        if ended:
            end_jobs(ended)  # a job ends whole: its descendants that left its process group too
        return bool(ended)

    def _start_pending(self) -> bool:
        running: dict[str, int] = {}
        for e in self._elements.values():
            if e.state is JobState.RUNNING:
                running[e.array] = running.get(e.array, 0) + 1
        started = False
        for e in self._elements.values():
            if e.state is not JobState.PENDING:
                continue
            argv = e.argv
            if running.get(e.array, 0) >= self._throttle.get(e.array, 1):
                continue
            if e.walltime is not None:
                e.deadline = time.time() + e.walltime
                argv = [*e.argv, "--deadline", repr(e.deadline + ORPHAN_GRACE)]  # the worker's own, for orphans
            try:
                with open(e.log, "ab") as logf:
                    e.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                              stderr=subprocess.STDOUT, cwd=e.cwd, env=e.env,
                                              start_new_session=True)
            except OSError as err:
                e.state, e.ended = JobState.LAUNCH_FAILED, time.monotonic()
                try:
                    with open(e.log, "ab") as logf:
                        logf.write(f"poolparty local queue: cannot start job: {err}\n".encode())
                except OSError:
                    pass
                continue
            e.pid, e.started, e.state = e.proc.pid, time.monotonic(), JobState.RUNNING
            e.ticks = start_ticks(e.pid)
            running[e.array] = running.get(e.array, 0) + 1
            started = True
        return started

    def _save(self) -> None:
        """Persist running pids so that a driver started after a SIGKILL can adopt them."""
        if self._state_file is None:
            return
        running = {e.element: e.record() for e in self._elements.values()
                   if e.state is JobState.RUNNING and e.pid is not None and e.ticks is not None}
        data = json.dumps({"next_id": self._next_id, "running": running}).encode()
        try:
            atomic_write(self._state_file, data, sync=False)
        except FileNotFoundError:
            pass  # the run directory was removed at the end of a clean run


def recorded_workers(run_dir: Path, name: str) -> dict[str, int]:
    """Element -> pid of the run's workers recorded in ``local_queue.json`` that are still the same live
    processes (read only; for ``poolparty status|cancel`` run from another process)."""
    try:
        saved = json.loads(local_queue_state(run_dir).read_text())
    except (OSError, ValueError):
        return {}
    return {element: pid for element, (pid, ticks, job, *_) in saved.get("running", {}).items()
            if job == name and ticks is not None and is_our_worker(pid, ticks, run_dir)}


def _kill_if_same(pid: int, ticks: int | None) -> None:
    """SIGKILL a job's group only if the pid still names the same process (pids are recycled)."""
    if ticks is not None and start_ticks(pid) == ticks:
        _signal_group(pid, signal.SIGKILL)


def _end_job(pid: int, ticks: int | None, marker: str) -> None:
    """SIGKILL what is left of a job: its group (if its worker still lives) and all its descendants."""
    _kill_if_same(pid, ticks)
    end_jobs([marker] if marker else [], [pid] if start_ticks(pid) == ticks else [])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
