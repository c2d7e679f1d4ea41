"""PoolPartyTaskRunner: real Prefect flows against a real Prefect server (``prefect_test_harness``),
on the local queue and on the real SLURM and SGE (skipped without them, a failure in CI).

Each queue runs a handful of flows; a module-scoped fixture runs a flow once and several tests
check what it left in its futures, in the Prefect API and on disk. Jobs import Prefect (~1.5 s),
so the flows pack several task runs per job.

The checks that Prefect runs against its own process-pool runner and prefect-dask against its
Dask runner are covered by equivalents written for this runner (marked "runner-agnostic").
"""
from __future__ import annotations

import os
import re

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry attempts

import asyncio
import contextvars
import dataclasses
import json
import math
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from prefect import flow, tags, task
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.states import StateType
from prefect.utilities.annotations import allow_failure, unmapped

from conftest import REAL_TIMING, install_call_counter, is_dry_run, wait_until
from real_wlm import require_or_skip, sge_available, slurm_available

from poolparty.errors import ConfigurationError, UnknownResourceError
from poolparty.resources import Resources
from prefect_poolparty import PoolPartyTaskRunner
from prefect_poolparty.resources import resources_from_tags

REPO = Path(__file__).resolve().parent.parent

# A job's audit hook: refuses every non-UNIX socket connect and writes what it saw. Installed through
# PYTHONPATH only in processes running ``poolparty.node.worker``, so it proves the jobs had no network.
NO_NETWORK_SITECUSTOMIZE = '''
import os, sys
_log = os.environ.get("PP_TEST_NONET_LOG")
if _log and "poolparty.node.worker" in sys.orig_argv:
    import socket as _socket
    with open(_log, "a") as _f:
        _f.write(f"{os.getpid()} armed\\n")
    def _refuse(event, args):
        if event == "socket.connect" and getattr(args[0], "family", None) != _socket.AF_UNIX:
            with open(_log, "a") as f:
                f.write(f"{os.getpid()} connect {args[1]!r}\\n")
            raise OSError(101, "network is unreachable (no route to the Prefect API from this job)")
    sys.addaudithook(_refuse)
'''


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def prefect_api():
    """One Prefect server for this file (the only one that needs it), stopped when the file is done."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@dataclasses.dataclass
class Cluster:
    kind: str  # local | slurm | sge
    tmp: Path
    call_log: Path

    def submit_calls(self) -> list[list[str]]:
        """The argv of every sbatch / qsub that submitted jobs (not the dry runs checking resources)."""
        if not self.call_log.exists():
            return []
        rows = [json.loads(line) for line in self.call_log.read_text().splitlines() if line.strip()]
        return [r["argv"] for r in rows if r["cmd"] in ("sbatch", "qsub") and not is_dry_run(r)]

    def runner(self, **kw: Any) -> PoolPartyTaskRunner:
        options: dict[str, Any] = dict(queue=self._queue, work_root=str(self.tmp / "runs"),
                                       polling_interval=1.0 if self.kind == "local" else 2.0)
        options.update(kw)
        return PoolPartyTaskRunner(**options)

    def _queue(self) -> Any:
        """A fresh adapter with the test suite's short grace periods (a kill is noticed in seconds)."""
        from poolparty.queues import make_queue
        from poolparty.queues.cli import SchedulerCLI

        q = make_queue(self.kind, SchedulerCLI(timeout=30, backoff_base=0.2))
        if self.kind != "local":
            for name, value in {**REAL_TIMING, "result_grace": 2.0}.items():
                setattr(q, name, value)
        return q

    def live_jobs(self, report: dict[str, Any]) -> list[str]:
        """Jobs of one flow run still pending or running, in the scheduler's (or /proc's) own view."""
        if self.kind == "slurm":
            out = subprocess.run(["squeue", "--noheader", "--array", f"--name={report['job_name']}",
                                  "--states=PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED", "--format=%i"],
                                 capture_output=True, text=True, timeout=30).stdout
            return [line for line in out.splitlines() if line.strip()]
        if self.kind == "sge":
            from poolparty.queues.sge import QSTAT, parse_qstat

            out = subprocess.run(QSTAT, capture_output=True, text=True, timeout=30).stdout
            return list(parse_qstat(out, report["job_name"]))
        return _local_workers(report["work_dir"])


def _local_workers(work_dir: str) -> list[str]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"poolparty.node.worker" in argv and any(work_dir.encode() in a for a in argv):
            pids.append(entry)
    return pids


def make_cluster(kind: str, tmp: Path, mp: pytest.MonkeyPatch) -> Cluster:
    """The local queue, or the real SLURM or SGE behind a PATH shim that logs every scheduler call."""
    if kind in ("slurm", "sge"):
        require_or_skip(slurm_available() if kind == "slurm" else sge_available(), f"real {kind.upper()}")
        install_call_counter(tmp / "shim", kind, tmp / "calls.jsonl")
        mp.setenv("PATH", f"{tmp / 'shim'}{os.pathsep}{os.environ['PATH']}")
    return Cluster(kind, tmp, tmp / "calls.jsonl")


@pytest.fixture(scope="module", params=["local", "slurm", "sge"])
def cluster(request, tmp_path_factory, prefect_api):
    mp = pytest.MonkeyPatch()
    try:
        yield make_cluster(request.param, tmp_path_factory.mktemp(f"prefect-{request.param}"), mp)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def local(tmp_path_factory, prefect_api):
    tmp = tmp_path_factory.mktemp("prefect-local-only")
    return Cluster("local", tmp, tmp / "calls.jsonl")


# ------------------------------------------------------------------------------------- API helpers
def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def api_task_runs(flow_run_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    out: dict[uuid.UUID, Any] = {}
    with _client() as client:
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200, offset=len(out))
            out.update({tr.id: tr for tr in page})
            if len(page) < 200:
                return out


def wait_for_api(flow_run_id: uuid.UUID, ids: dict[str, uuid.UUID], final: dict[str, StateType],
                 timeout: float = 90) -> dict[uuid.UUID, Any]:
    """Task runs as the API shows them once every named one reached its expected state type (the
    server records events asynchronously)."""
    got: dict[uuid.UUID, Any] = {}

    def arrived() -> bool:
        nonlocal got
        got = api_task_runs(flow_run_id)
        return all(ids[name] in got and got[ids[name]].state_type == want for name, want in final.items())

    try:
        wait_until(arrived, timeout, "the task runs' final states in the Prefect API", interval=1.0)
    except AssertionError:
        seen = {name: (got[i].state_type if i in got else "missing") for name, i in ids.items() if name in final}
        raise AssertionError(f"API states after {timeout} s: {seen}; expected {final}") from None
    return got


def state_history(task_run_id: uuid.UUID) -> list[str]:
    with _client() as client:
        states = client.read_task_run_states(task_run_id)
    return [s.name for s in sorted(states, key=lambda s: s.timestamp)]


def logs_of(task_run_ids: list[uuid.UUID]) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    with _client() as client:
        return client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=task_run_ids)),
                                limit=200, offset=0)


def run_flow(flow_fn: Callable[..., Any], runner: PoolPartyTaskRunner, *args: Any) -> tuple[Any, Any]:
    """Run a flow with this runner; returns (flow state, the runner's report of the flow run)."""
    state = flow_fn.with_options(task_runner=runner)(*args, return_state=True)
    return state, runner.reports[-1]


# ------------------------------------------------------------------------------------------ tasks
@task
def add(a: int, b: int) -> int:
    return a + b


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def explode(x: int) -> int:
    raise ValueError(f"boom {x}")


@task
def describe(upstream: Any) -> str:
    return f"{type(upstream).__name__}: {upstream}"


@task
def stamp(name: str, directory: str, seconds: float = 0.0) -> float:
    time.sleep(seconds)
    Path(directory, name).write_text(str(time.time()))
    return time.time()


@task(retries=2, retry_delay_seconds=1)
def flaky(directory: str) -> int:
    counter = Path(directory, "flaky-attempts")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n < 3:
        raise RuntimeError(f"flaky attempt {n}")
    return n


@task
async def async_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


@dataclasses.dataclass
class Point:
    x: float
    y: float


@task
def norm(p: Point) -> float:
    return math.hypot(p.x, p.y)


@task
def pid(i: int) -> int:
    return os.getpid()


@task
def recurse(depth: int) -> list[int]:
    """Submits from inside a job: runs in the job's process, never as a job from the node."""
    if depth == 0:
        return [os.getpid()]
    inner = recurse.submit(depth - 1).result()
    pids = pid.map(range(2))
    return [os.getpid(), *inner, *[p.result() for p in pids]]


@task
def size_of(blob: Any) -> int:
    return len(blob)


@task
def unpicklable_result() -> Any:
    return threading.Lock()


@task
def working_directory() -> str:
    return os.getcwd()


@task
def interrupted() -> None:
    raise KeyboardInterrupt("from inside the task")


@flow
def semantics(directory: str) -> dict[str, Any]:
    futures: dict[str, Any] = {}
    futures["a"] = a = add.submit(1, 2)
    futures["b"] = b = add.submit(a, 10)
    futures["c"] = c = add.submit(b, a)
    futures["total"] = total.submit([a, b, c])
    futures["bad"] = bad = explode.submit(3)
    futures["after_bad"] = add.submit(bad, 1)
    futures["after_bad_wait_for"] = add.submit(1, 1, wait_for=[bad])
    futures["tolerant"] = describe.submit(allow_failure(bad))
    futures["first"] = first = stamp.submit("first", directory, 1.0)
    futures["second"] = stamp.submit("second", directory, wait_for=[first])
    futures["flaky"] = flaky.submit(directory)
    futures["async"] = async_square.submit(7)
    futures["recurse"] = recurse.submit(2)
    futures["large"] = size_of.submit(b"x" * 2_000_000)
    futures["big_memory"] = add.with_options(tags=["poolparty:memory=1GB"]).submit(20, 22)
    futures["unpicklable_arg"] = size_of.submit([threading.Lock()])
    futures["unpicklable_result"] = unpicklable_result.submit()
    futures["interrupted"] = interrupted.submit()
    futures["cwd"] = working_directory.submit()
    with tags("semantics-tag"):
        futures["tagged"] = add.submit(5, 5)
    mapped = {"mapped": add.map([1, 2, 3], unmapped(100)), "async_mapped": async_square.map([1, 2]),
              "dataclasses": norm.map([Point(3, 4), Point(6, 8)])}
    for f in [*futures.values(), *(f for fl in mapped.values() for f in fl)]:
        f.wait()
    out = {name: (f.task_run_id, f.state) for name, f in futures.items()}
    out.update({name: [(f.task_run_id, f.state) for f in fl] for name, fl in mapped.items()})
    out["flow_run_id"] = FlowRunContext.get().flow_run.id
    return out


# ------------------------------------------------------------------- the semantics flow (per queue)
@pytest.fixture(scope="module")
def semantics_run(cluster, tmp_path_factory):
    """The ``semantics`` flow, relay mode (the default), with the jobs' network cut by an audit hook."""
    directory = tmp_path_factory.mktemp(f"semantics-{cluster.kind}")
    site = directory / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK_SITECUSTOMIZE)
    nonet_log = directory / "nonet.log"
    mp = pytest.MonkeyPatch()
    mp.setenv("PP_TEST_NONET_LOG", str(nonet_log))
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    submits_before = len(cluster.submit_calls())
    try:
        state, report = run_flow(semantics, cluster.runner(max_running=2), str(directory))
    finally:
        mp.undo()
    assert state.is_completed(), state
    out = state.result()
    ids = {name: v[0] for name, v in out.items() if isinstance(v, tuple)}
    final = {name: v[1].type for name, v in out.items() if isinstance(v, tuple)}
    api = wait_for_api(out["flow_run_id"], ids, final)
    return dict(out=out, report=report, api=api, ids=ids, directory=directory, nonet_log=nonet_log,
                submits=cluster.submit_calls()[submits_before:], kind=cluster.kind)


def _value(entry: tuple[Any, Any]) -> Any:
    return entry[1].result(raise_on_failure=False)


def test_results_and_dependencies(semantics_run):
    out, api, ids = semantics_run["out"], semantics_run["api"], semantics_run["ids"]
    assert [_value(out[k]) for k in ("a", "b", "c", "total")] == [3, 13, 16, 32]
    assert [e[1].result() for e in out["mapped"]] == [101, 102, 103]
    assert [e[1].result() for e in out["async_mapped"]] == [1, 4]
    assert [e[1].result() for e in out["dataclasses"]] == [5.0, 10.0]
    assert _value(out["async"]) == 49
    assert _value(out["large"]) == 2_000_000
    assert _value(out["big_memory"]) == 42
    assert _value(out["cwd"]) == os.getcwd()  # the job runs the task in the flow's working directory

    def inputs(name: str) -> dict[str, set[uuid.UUID]]:
        return {k: {i.id for i in v} for k, v in api[ids[name]].task_inputs.items()}

    # futures passed as arguments are edges in the API, as with Prefect's own runners
    assert inputs("b")["a"] == {ids["a"]}
    assert inputs("c") == {"a": {ids["b"]}, "b": {ids["a"]}}  # add.submit(b, a)
    assert inputs("total")["xs"] == {ids["a"], ids["b"], ids["c"]}
    assert ids["first"] in inputs("second")["wait_for"]
    assert "semantics-tag" in api[ids["tagged"]].tags


def test_failing_task_and_downstream(semantics_run):
    out, api, ids = semantics_run["out"], semantics_run["api"], semantics_run["ids"]
    bad = out["bad"][1]
    assert bad.is_failed() and isinstance(bad.result(raise_on_failure=False), ValueError)
    assert "boom 3" in str(bad.result(raise_on_failure=False))
    for name in ("after_bad", "after_bad_wait_for"):  # the engine in the job says: upstream failed
        state = out[name][1]
        assert state.is_pending() and state.name == "NotReady", (name, state)
        assert api[ids[name]].state.name == "NotReady"
    assert _value(out["tolerant"]).startswith("ValueError: boom 3")  # allow_failure hands over the exception
    assert api[ids["bad"]].state_type == StateType.FAILED


def test_retries_run_inside_the_job(semantics_run):
    out, api, ids = semantics_run["out"], semantics_run["api"], semantics_run["ids"]
    assert _value(out["flaky"]) == 3
    assert api[ids["flaky"]].run_count == 3
    history = state_history(ids["flaky"])
    assert history.count("Retrying") == 2 and history[-1] == "Completed", history
    assert semantics_run["report"]["resubmissions"] == 0  # Prefect retried in the job; no new job


def test_wait_for_orders_task_runs(semantics_run):
    directory = semantics_run["directory"]
    first_done = float(Path(directory, "first").read_text())
    assert _value(semantics_run["out"]["second"]) >= first_done


def test_nested_and_recursive_submission_stay_in_the_job(semantics_run):
    pids = _value(semantics_run["out"]["recurse"])
    assert len(pids) == 7 and len(set(pids)) == 1  # 3 levels + 2 x 2 mapped, all in one job process
    report = semantics_run["report"]
    assert report["task_runs"] == len(semantics_run["ids"]) + 7  # nested ones never reached the runner


def test_unshippable_task_runs_crash_alone(semantics_run):
    out, api, ids = semantics_run["out"], semantics_run["api"], semantics_run["ids"]
    arg = out["unpicklable_arg"][1]
    assert arg.is_crashed() and "could not ship the task run" in arg.message
    result = out["unpicklable_result"][1]
    assert result.is_crashed() and "cannot be pickled" in result.message
    assert api[ids["unpicklable_arg"]].state_type == StateType.CRASHED
    assert _value(out["a"]) == 3  # the others in the same batch are not affected


def test_keyboard_interrupt_inside_a_task_crashes_it_in_its_job(semantics_run):
    out, api, ids = semantics_run["out"], semantics_run["api"], semantics_run["ids"]
    assert out["interrupted"][1].is_crashed()
    assert api[ids["interrupted"]].state_type == StateType.CRASHED
    assert semantics_run["report"]["resubmissions"] == 0  # the job survived it: nothing resubmitted


def test_jobs_had_no_network_and_everything_arrived(semantics_run):
    """Relay mode: every job refused every socket (audit hook), yet the API has each task run with
    its state history and logs, linked to the flow run."""
    lines = semantics_run["nonet_log"].read_text().splitlines()
    armed = [line for line in lines if line.endswith(" armed")]
    assert armed, "the audit hook never ran in a job"
    assert [line for line in lines if " connect " in line] == []
    report = semantics_run["report"]
    assert report["relayed_events"] >= 3 * len(semantics_run["ids"]) - 10
    api, ids = semantics_run["api"], semantics_run["ids"]
    assert state_history(ids["a"]) == ["Pending", "Running", "Completed"]
    assert api[ids["a"]].flow_run_id == semantics_run["out"]["flow_run_id"]
    logs = logs_of([ids["a"], ids["bad"]])
    messages = {(log.task_run_id, log.message.split("\n")[0]) for log in logs}
    assert (ids["a"], "Finished in state Completed()") in messages
    assert any(tid == ids["bad"] and "boom 3" in log_message for tid, log_message in
               ((log.task_run_id, log.message) for log in logs))


def test_per_task_resources_from_tags(semantics_run):
    if semantics_run["kind"] == "local":
        pytest.skip("the local queue has no job header to look at; see test_resources_from_tags")
    flag = {"slurm": "--mem=1024M", "sge": "h_vmem=1024M"}[semantics_run["kind"]]
    with_mem = [argv for argv in semantics_run["submits"] if any(flag in a for a in argv)]
    assert len(with_mem) == 1, semantics_run["submits"]


# -------------------------------------------------- infrastructure failures: resubmission, give-up
@task
def victim(directory: str, kind: str) -> str:
    """First attempt: tells the test how to kill its job, then hangs; a resubmission returns."""
    marker = Path(directory, "victim")
    if marker.exists():
        return "survived"
    target = {"slurm": f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ.get('SLURM_ARRAY_TASK_ID')}",
              "sge": f"{os.environ.get('JOB_ID')} {os.environ.get('SGE_TASK_ID')}"}.get(kind, str(os.getpid()))
    marker.write_text(target)
    time.sleep(300)
    return "not killed"


@task
def doomed() -> str:
    os.kill(os.getpid(), signal.SIGKILL)  # e.g. the OOM killer, every time
    return "unreachable"


@flow
def infrastructure(directory: str, kind: str) -> dict[str, Any]:
    futures = {"victim": victim.submit(directory, kind), "doomed": doomed.submit(), "bystander": add.submit(1, 1)}
    for f in futures.values():
        f.wait()
    out = {name: (f.task_run_id, f.state) for name, f in futures.items()}
    out["flow_run_id"] = FlowRunContext.get().flow_run.id
    return out


def test_killed_job_is_resubmitted_and_a_lost_cause_crashes(cluster, tmp_path):
    def kill_victim() -> None:
        target = wait_until(lambda: Path(tmp_path, "victim").exists() and Path(tmp_path, "victim").read_text(),
                            120, "the victim's job to start")
        time.sleep(0.5)
        if cluster.kind == "slurm":
            subprocess.run(["scancel", target], check=True, timeout=30)  # behind the runner's back
        elif cluster.kind == "sge":
            job, index = target.split()
            subprocess.run(["qdel", job, "-t", index], check=True, timeout=30)
        else:
            os.kill(int(target), signal.SIGKILL)

    killer = threading.Thread(target=kill_victim, daemon=True)
    killer.start()
    state, report = run_flow(infrastructure, cluster.runner(max_resubmissions=1, tasks_per_job=1),
                             str(tmp_path), cluster.kind)
    killer.join(timeout=5)
    out = state.result()
    assert _value(out["victim"]) == "survived"
    assert _value(out["bystander"]) == 2
    crashed = out["doomed"][1]
    assert crashed.is_crashed() and "gave up" in crashed.message, crashed
    assert report["resubmissions"] >= 2  # the victim once, the doomed one at least once
    ids = {k: v[0] for k, v in out.items() if isinstance(v, tuple)}
    api = wait_for_api(out["flow_run_id"], ids, {"victim": StateType.COMPLETED, "doomed": StateType.CRASHED})
    # the same task run id on both attempts: one task run in the API, two runs in its history
    assert state_history(ids["victim"]).count("Running") == 2
    assert "gave up" in api[ids["doomed"]].state.message


@task
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@flow
def crash_beside_a_long_task(seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    long, dead = nap.submit(seconds), doomed.submit()
    dead.wait()
    crashed_after = time.monotonic() - start
    long.wait()
    return {"dead": dead.state, "crashed_after": crashed_after, "long": long.state,
            "long_after": time.monotonic() - start}


def test_a_given_up_task_run_crashes_before_its_batch_ends(local):
    """The core reports a given-up chunk at once: its task run is Crashed while a task run of the
    same array is still running, not when the whole batch ends."""
    state, report = run_flow(crash_beside_a_long_task, local.runner(max_resubmissions=0, tasks_per_job=1), 20.0)
    out = state.result()
    assert report["batches"] == 1  # one array: without the per-chunk report the crash would wait for the nap
    assert out["dead"].is_crashed() and "gave up" in out["dead"].message, out["dead"]
    assert out["long"].result() == "woke"
    assert out["crashed_after"] < out["long_after"] - 8, out


# ------------------------------------------------------------ cancellation: SIGTERM (cancel_all), Ctrl-C
@task
def sleeper(directory: str, name: str, seconds: float) -> str:
    Path(directory, f"started-{name}").touch()
    time.sleep(seconds)
    return name


RECORDED: dict[str, Any] = {}


@flow
def long_running(directory: str) -> list[str]:
    RECORDED["flow_run_id"] = FlowRunContext.get().flow_run.id
    futures = [sleeper.submit(directory, str(i), 300) for i in range(4)]
    RECORDED["ids"] = [f.task_run_id for f in futures]
    return [f.result() for f in futures]


def _interrupt_when_running(directory: Path, sig: int) -> threading.Thread:
    def fire() -> None:
        wait_until(lambda: list(directory.glob("started-*")), 120, "a running job")
        time.sleep(0.5)
        os.kill(os.getpid(), sig)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


def _check_cancelled(cluster: Cluster, runner: PoolPartyTaskRunner) -> None:
    report = runner.reports[-1]
    wait_until(lambda: not cluster.live_jobs(report), 30, "every job of the flow run to be gone")
    assert report["cancelled"] == 4
    ids = {str(i): tid for i, tid in enumerate(RECORDED["ids"])}
    wait_for_api(RECORDED["flow_run_id"], ids, {name: StateType.CANCELLED for name in ids})


def test_sigterm_cancels_every_job_of_the_flow_run(cluster, tmp_path):
    """SIGTERM is how a Prefect worker cancels a flow run (and how scancel ends a driver job):
    Prefect calls the runner's cancel_all(), which cancels all jobs in one scheduler call."""
    from prefect.exceptions import TerminationSignal

    runner = cluster.runner(tasks_per_job=1, max_running=2)
    # after its clean-up, Prefect re-sends SIGTERM to the handler it found: let that be a no-op here
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        firing = _interrupt_when_running(tmp_path, signal.SIGTERM)
        with pytest.raises(TerminationSignal):
            long_running.with_options(task_runner=runner)(str(tmp_path))
        firing.join(timeout=5)
    finally:
        signal.signal(signal.SIGTERM, previous)
    _check_cancelled(cluster, runner)


def test_ctrl_c_cancels_every_job(local, tmp_path):
    runner = local.runner(tasks_per_job=1, max_running=2)
    firing = _interrupt_when_running(tmp_path, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        long_running.with_options(task_runner=runner)(str(tmp_path))
    firing.join(timeout=5)
    _check_cancelled(local, runner)


# ----------------------------------------------------------- runner-agnostic checks (local queue)
@task
def sleep_then(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


@task(timeout_seconds=1)
def too_slow() -> str:
    time.sleep(30)
    return "finished"


@task(timeout_seconds=1)
async def too_slow_async() -> str:
    await asyncio.sleep(30)
    return "finished"


@task(tags=["pp-serial"])
def serial_section(directory: str, name: str) -> tuple[float, float]:
    start = time.time()
    time.sleep(0.5)
    return start, time.time()


@flow
def timing(directory: str) -> dict[str, Any]:
    t0 = time.monotonic()
    slow = sleep_then.submit(4, "slow")
    submit_seconds = time.monotonic() - t0
    fast = sleep_then.submit(0, "fast")
    timeouts = [too_slow.submit(), too_slow_async.submit()]
    serial = [serial_section.submit(directory, str(i)) for i in range(2)]
    order = [f.result() for f in as_completed([slow, fast])]
    for f in [*timeouts, *serial]:
        f.wait()
    return {"order": order, "submit_seconds": submit_seconds, "timeouts": [f.state for f in timeouts],
            "serial": [f.result() for f in serial]}


@pytest.fixture(scope="module")
def timing_run(local, tmp_path_factory):
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with _client() as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="tag:pp-serial", limit=1))
    state, report = run_flow(timing, local.runner(tasks_per_job=1, max_running=6),
                             str(tmp_path_factory.mktemp("timing")))
    return state.result()


def test_submit_does_not_wait_for_the_job(timing_run):
    assert timing_run["submit_seconds"] < 0.5


def test_as_completed_yields_in_completion_order(timing_run):
    assert timing_run["order"] == ["fast", "slow"]


def test_task_timeouts_sync_and_async(timing_run):
    for state in timing_run["timeouts"]:
        assert state.is_failed() and state.name == "TimedOut", state


def test_tag_concurrency_limit_is_held_by_the_runner(timing_run):
    """Relayed jobs cannot lease tag slots; the runner does, so a limit of 1 serialises the task runs."""
    spans = sorted(timing_run["serial"])
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans


@flow
def small(directory: str) -> dict[str, Any]:
    a = add.submit(2, 3)
    b = add.submit(a, 1)
    bad = explode.submit(1)
    for f in (b, bad):
        f.wait()
    return {"ids": {"a": a.task_run_id, "b": b.task_run_id, "bad": bad.task_run_id}, "b": b.result(),
            "bad": bad.state, "flow_run_id": FlowRunContext.get().flow_run.id}


CONSOLE_FLOW = '''
import sys
from prefect import flow, task
from prefect_poolparty import PoolPartyTaskRunner


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def explode(x: int) -> int:
    raise ValueError(f"boom {x}")


@flow
def small() -> int:
    a = add.submit(2, 3)
    b = add.submit(a, 1)
    explode.submit(1).wait()
    return b.result()


if __name__ == "__main__":
    print("RESULT", small.with_options(task_runner=PoolPartyTaskRunner(queue="local", work_root=sys.argv[1]))())
'''


def test_each_task_runs_end_is_on_the_flows_console(local, tmp_path):
    """As with Prefect's own runners, the flow's console (its stderr, in a process of its own against the
    test server) says how each task run ended and shows a failed task's traceback with its file and line;
    it used to say nothing: the logs were only in the API."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "console_flow.py").write_text(CONSOLE_FLOW)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run([sys.executable, "console_flow.py", str(tmp_path / "runs")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "RESULT 6" in proc.stdout, console
    assert len(re.findall(r"Task run 'add-\w+' - Finished in state Completed\(\)", console)) == 2, console
    assert re.search(r"Task run 'explode-\w+' - Task run failed with exception: ValueError\('boom 1'\)", console)
    # the task's own frame: its file and line, although __main__ travels by value
    assert re.search(r'File ".*console_flow\.py", line 14, in explode\n(.*\n)*ValueError: boom 1\n',
                     console), console
    assert re.search(r"Task run 'explode-\w+' - Finished in state Failed\(", console), console


def test_direct_mode_jobs_talk_to_the_api(local, tmp_path):
    state, report = run_flow(small, local.runner(relay=False), str(tmp_path))
    out = state.result()
    assert out["b"] == 6 and out["bad"].is_failed()
    assert "relayed_events" not in report
    api = wait_for_api(out["flow_run_id"], out["ids"], {"a": StateType.COMPLETED, "b": StateType.COMPLETED,
                                                        "bad": StateType.FAILED})
    assert {i.id for i in api[out["ids"]["b"]].task_inputs["a"]} == {out["ids"]["a"]}
    assert state_history(out["ids"]["a"]) == ["Pending", "Running", "Completed"]


@task(persist_result=True)
def persisted(x: int) -> int:
    return x * x


@task(persist_result=True, result_storage="local-file-system/pp-results")
def persisted_by_slug(x: int) -> int:
    return x * x


@flow(persist_result=True)
def stored(by_slug: bool) -> list[Any]:
    futures = (persisted_by_slug if by_slug else persisted).map(range(3))
    return [f.wait() or f.state for f in futures]


def test_result_storage_blocks_are_resolved_on_the_driver(local, tmp_path):
    """A relayed job cannot load a block from the API: the task's ``result_storage=`` slug, the
    flow's block and the default storage block of the settings are resolved by the runner and travel
    with the task run, in a flow and with the runner used outside one. Every task run completes and
    its result lands in the block's directory."""
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

    block_dir = tmp_path / "block"
    block = LocalFileSystem(basepath=str(block_dir))
    block.save("pp-results", overwrite=True)

    def written() -> int:
        return len(os.listdir(block_dir)) if block_dir.exists() else 0

    def outside_a_flow() -> list[Any]:
        with local.runner() as runner:
            futures = [runner.submit(persisted, {"x": x}) for x in range(3)]
            return [f.wait() or f.state for f in futures]

    default_block = {PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: "local-file-system/pp-results"}
    cases = [("task slug", {}, lambda: stored.with_options(task_runner=local.runner())(True)),
             ("flow block", {}, lambda: stored.with_options(task_runner=local.runner(), result_storage=block)(False)),
             ("default block", default_block, lambda: stored.with_options(task_runner=local.runner())(False)),
             ("outside a flow, default block", default_block, outside_a_flow)]
    for name, settings, run in cases:
        before = written()
        with temporary_settings(settings):
            states = run()
        assert [s.type for s in states] == [StateType.COMPLETED] * 3, (name, [s.message for s in states])
        assert [s.result() for s in states] == [0, 1, 4], name
        assert written() >= before + 3, name  # each result record is a file of the block


def test_runner_must_be_started():
    """The error reads like Prefect's own runners' (``ThreadPoolTaskRunner``: "Task runner is not started")."""
    runner = PoolPartyTaskRunner()
    with pytest.raises(RuntimeError, match="^Task runner is not started"):
        runner.submit(add, {"a": 1, "b": 2})
    with pytest.raises(RuntimeError, match="^Task runner is not started"):
        runner.map(add, {"a": [1, 2], "b": 3})


def test_a_moved_prefect_internal_fails_before_any_job_naming_the_prefect_version(monkeypatch, tmp_path):
    """Feature test, not version test: a Prefect without a hook the relay uses is refused when the
    first task run is submitted (driver) and when a job installs the relay (node)."""
    import prefect
    from prefect import task_engine

    from prefect_poolparty import offline
    from prefect_poolparty.internals import PrefectInternalsMoved, check, missing

    assert missing() == []
    check()
    monkeypatch.delattr(task_engine, "_concurrency")
    assert missing() == ["prefect.task_engine:_concurrency"]
    expected = f"Prefect {prefect.__version__}.*prefect.task_engine:_concurrency"
    with pytest.raises(PrefectInternalsMoved, match=expected):
        with PoolPartyTaskRunner(work_root=str(tmp_path)) as runner:
            runner.submit(add, {"a": 1, "b": 2})
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []  # no engine, no work_dir
    monkeypatch.setattr(offline, "_writer", None)
    with pytest.raises(PrefectInternalsMoved, match=expected):
        offline.install(str(tmp_path))
    assert offline._writer is None


def test_duplicate_pickle_and_enter_are_cheap():
    runner = PoolPartyTaskRunner(queue="slurm", max_running=7, memory="4GB", tasks_per_job=3, relay=False)
    twin = runner.duplicate()
    assert twin == runner and twin is not runner
    blob = pickle.dumps(runner)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    assert clone == runner
    with clone:  # what Prefect does on the compute node: no engine, no thread, no work_dir
        assert clone.engine is None
    with_queue_factory = PoolPartyTaskRunner(queue=lambda: None)
    assert pickle.loads(pickle.dumps(with_queue_factory)).queue is None  # a node never submits
    before = threading.active_count()
    for _ in range(20):
        with PoolPartyTaskRunner().duplicate():
            pass
    assert threading.active_count() == before


def test_options_are_checked_when_the_runner_is_made():
    with pytest.raises(UnknownResourceError, match="unknown option.*memroy"):
        PoolPartyTaskRunner(memroy="4GB")
    with pytest.raises(ConfigurationError, match="work_root"):
        PoolPartyTaskRunner(work_dir="/tmp/x")


def test_resources_from_tags():
    base = Resources(cpus=1, memory=1024**3)
    r = resources_from_tags({"poolparty:memory=4GB", "poolparty:cpus=2", "other", "poolparty:extra=--exclusive"},
                            base)
    assert (r.cpus, r.memory, r.extra) == (2, 4 * 1024**3, ("--exclusive",))
    assert resources_from_tags({"plain"}, base) is base
    with pytest.raises(UnknownResourceError, match="valid names"):
        resources_from_tags({"poolparty:memroy=4GB"}, base)
    with pytest.raises(ConfigurationError, match="poolparty:<name>=<value>"):
        resources_from_tags({"poolparty:memory"}, base)


def test_infrastructure_verdict_names_how_a_task_run_ended_without_its_state():
    import concurrent.futures as cf

    from poolparty.errors import RemoteTraceback, RetryLimitExceeded
    from prefect_poolparty.outcomes import infrastructure_verdict

    assert infrastructure_verdict(cf.CancelledError("flow cancelled"), 0) == \
        ("cancelled", "poolparty cancelled its job: flow cancelled")
    gave_up = RetryLimitExceeded({2: "NODE_FAIL on n7"}, {2: [5, 6]}, "/w/batches/1")
    assert infrastructure_verdict(gave_up, 2) == \
        ("crashed", "its job ended without a result and poolparty gave up: NODE_FAIL on n7")
    kind, message = infrastructure_verdict(gave_up, 3)  # no reason for this chunk: the error itself
    assert kind == "crashed" and message.endswith(f"gave up: {gave_up}")
    error = ValueError("cannot unpickle the task")
    error.__cause__ = RemoteTraceback("Traceback (most recent call last): ...")
    assert infrastructure_verdict(error, 0) == ("crashed", "the job could not run the task run: ValueError: "
                                                "cannot unpickle the task\n\nTraceback (most recent call last): ...")


# ------------------------------------------------------------------------------------ the example
def test_example_parameter_sweep(local, tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "examples" / "prefect"))
    try:
        import parameter_sweep
    finally:
        sys.path.remove(str(REPO / "examples" / "prefect"))
    runner = local.runner(max_running=4, walltime="0:10:00")
    summary = parameter_sweep.parameter_sweep.with_options(task_runner=runner)(str(tmp_path), 4, 5)
    assert summary["points"] == 20 and 0 < summary["best"]["score"]
    report = runner.reports[-1]
    assert report["task_runs"] == 22 and report["crashed"] == 0


def test_example_leaves_nothing_in_the_current_directory(local, tmp_path, monkeypatch):
    """It used to leave sweep-scratch/ behind."""
    sys.path.insert(0, str(REPO / "examples" / "prefect"))
    try:
        import parameter_sweep
    finally:
        sys.path.remove(str(REPO / "examples" / "prefect"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POOLPARTY_WORK_ROOT", str(local.tmp / "runs"))
    assert parameter_sweep.main([], n_damping=2, n_noise=2)["points"] == 4
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- .map over 1,000 items
@task
def square(x: int) -> int:
    return x * x


@flow
def thousand() -> tuple[list[int], float]:
    t0 = time.monotonic()
    futures = square.map(range(1000))
    submitted = time.monotonic() - t0
    return [f.result() for f in futures], submitted


@pytest.fixture(scope="module")
def thousand_runs(prefect_api, tmp_path_factory):
    """The ``thousand`` flow on every available queue, all at once, in threads: the test server needs
    a minute to record a run's 4,000 events and logs, which would hold up a flow run started after it
    (hence also last in the file)."""
    mp = pytest.MonkeyPatch()
    clusters = {"local": make_cluster("local", tmp_path_factory.mktemp("thousand-local"), mp)}
    for kind, unavailable in (("slurm", slurm_available()), ("sge", sge_available())):
        if not unavailable:
            clusters[kind] = make_cluster(kind, tmp_path_factory.mktemp(f"thousand-{kind}"), mp)
    results: dict[str, Any] = {}

    def run(kind: str, cluster: Cluster) -> None:
        try:
            t0 = time.monotonic()
            state, report = run_flow(thousand, cluster.runner(max_running=5))  # 200 task runs per job
            results[kind] = (state, report, time.monotonic() - t0, cluster.submit_calls())
        except BaseException as e:
            results[kind] = e

    # each thread in a copy of this one's context: it holds the test server's settings
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, *item), daemon=True)
               for item in clusters.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=280)
    mp.undo()
    return results


@pytest.mark.parametrize("kind", ["local", "slurm", "sge"])
def test_map_over_1000_items_is_one_array(kind, thousand_runs):
    if kind != "local":
        require_or_skip(slurm_available() if kind == "slurm" else sge_available(), f"real {kind.upper()}")
    got = thousand_runs.get(kind)
    if isinstance(got, BaseException):
        raise got
    assert got is not None, "the flow did not finish in time"
    state, report, wall, submits = got
    values, submitted = state.result()
    assert values == [x * x for x in range(1000)]
    assert report["submissions"] == 1 and report["batches"] == 1 and report["task_runs"] == 1000
    if kind != "local":
        assert len(submits) == 1  # one sbatch / qsub for the whole map
    assert submitted < 10  # .map returned without waiting for any job
    # every state change and log went to Prefect (3 states and 1 log per task run); the test server
    # takes a minute more to record them on this machine (so does it with Prefect's own thread pool
    # runner), so the API side is checked in detail by the smaller flows
    assert report["relayed_events"] == 3000 and report["relayed_logs"] == 1000
    print(f"\n[{kind}] .map over 1,000: {report['submissions']} submission(s), flow {wall:.1f} s (all queues "
          f"at once), .map returned in {submitted:.2f} s")
