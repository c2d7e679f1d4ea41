"""The Snakemake executor plugin (``snakemake --executor poolparty``): Snakemake's own plugin test base
on the local queue and on real SLURM, the example workflow end to end with the real CLI on local,
SLURM and SGE, arrays per scheduling round, cheap import, Ctrl-C, and the resource translation."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Optional

import pytest

from conftest import wait_until
from real_wlm import require_or_skip, sge_available, slurm_available

from snakemake.common.tests import TestWorkflowsLocalStorageBase  # the test extra installs snakemake

from snakemake_executor_plugin_poolparty import ExecutorSettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "snakemake"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


# -- Snakemake's own test base ---------------------------------------------------------------------
class TestWorkflowsLocalQueue(TestWorkflowsLocalStorageBase):
    __test__ = True

    def get_executor(self) -> str:
        return "poolparty"

    def get_executor_settings(self) -> Optional[ExecutorSettings]:
        return ExecutorSettings(queue="local", max_running=3)


class RealQueueWorkflows(TestWorkflowsLocalStorageBase):
    """Snakemake's test base on a real scheduler (skipped without one, failed in CI)."""
    __test__ = False
    queue = ""

    @pytest.fixture(autouse=True)
    def _needs_scheduler(self):
        require_or_skip((slurm_available if self.queue == "slurm" else sge_available)(), f"real {self.queue}")

    def get_executor(self) -> str:
        return "poolparty"

    def get_executor_settings(self) -> Optional[ExecutorSettings]:
        return ExecutorSettings(queue=self.queue, polling_interval=2.0)


class TestWorkflowsRealSlurm(RealQueueWorkflows):
    __test__ = True
    queue = "slurm"


class TestWorkflowsRealSge(RealQueueWorkflows):
    __test__ = True
    queue = "sge"


# -- helpers ---------------------------------------------------------------------------------------
# the snakemake CLI with the fake schedulers' short grace periods (conftest.FAKE_TIMING), set on the
# adapter classes before Snakemake starts: a failed job is noticed in about a second, not 15 s
FAST_GRACE = """
import sys
from conftest import FAKE_TIMING
from poolparty.queues.sge import SgeQueue
from poolparty.queues.slurm import SlurmQueue
for cls in (SlurmQueue, SgeQueue):
    for name, value in FAKE_TIMING.items():
        setattr(cls, name, value)
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def run_snakemake(workdir: Path, *args: str, timeout: float = 200,
                  fast_grace: bool = False) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    argv = [sys.executable, "-c", FAST_GRACE] if fast_grace else [SNAKEMAKE]
    env = dict(os.environ)
    if fast_grace:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    proc = subprocess.run([*argv, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
    proc.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return proc


def write_workflow(path: Path, snakefile: str, profile: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Snakefile").write_text(textwrap.dedent(snakefile))
    if profile is not None:
        (path / "profile").mkdir()
        (path / "profile" / "config.yaml").write_text(textwrap.dedent(profile))
    return path


def tail(proc: subprocess.CompletedProcess[str], n: int = 60) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-n:])


# -- the example workflow, end to end with the CLI -------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "slurm", "sge"])
def test_example_workflow_end_to_end(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)  # real SLURM/SGE: skip or fail (CI) without one; counts calls
    wd = tmp_path / "example"
    shutil.copytree(EXAMPLE, wd, ignore=shutil.ignore_patterns(".snakemake", "results", "logs"))
    proc = run_snakemake(wd, "--executor", "poolparty", "--poolparty-queue", kind, "-j", "10", "--retries", "1",
                         "--poolparty-polling-interval", "2")
    assert proc.returncode == 0, tail(proc)
    report = (wd / "results" / "report.txt").read_text()
    assert report.startswith("k-mer profiles of 3 samples") and "liver\tGC=" in report
    # merge_counts failed on attempt 1 (1000 MB < 1500 MB) and was retried by Snakemake with 2000 MB
    assert (wd / "logs" / "merge_counts.log").read_text().strip().endswith("mem_mb=2000, needs 1500")
    out = proc.stdout + proc.stderr
    assert "Trying to restart job" in out
    logs = list((wd / ".snakemake" / "poolparty_logs").glob("*/merge_counts.*.attempt1.log"))
    assert len(logs) == 1, out
    assert "merge_counts: out of memory" in logs[0].read_text() and "mem_mb=1000" in logs[0].read_text()
    assert str(logs[0]) in out  # the path was handed to Snakemake (aux_logs)
    assert not list((wd / ".snakemake" / "poolparty_logs").glob("*/*attempt2.log"))
    jobs = out.count("\nrule ")  # remote jobs (the localrule `all` prints "localrule")
    assert jobs == 12  # 3 simulate + 3 count + 3 gc + 2 merge attempts + 1 report
    if kind != "local":
        submit = "sbatch" if kind == "slurm" else "qsub"
        n_submit = len(q.calls(submit))
        status = len(q.calls("squeue" if kind == "slurm" else "qstat"))
        print(f"\n{kind}: {jobs} jobs, {n_submit} {submit} calls, {status} status calls, "
              f"{proc.elapsed:.1f} s")  # type: ignore[attr-defined]
        sizes = [array_size(c["argv"]) for c in q.calls(submit)]
        # one array per rule and scheduling round: the three simulate_reads jobs, ready together at
        # the start, leave as one; later rounds depend on when the scheduler finishes each element,
        # and jobs taken by a warm element of an earlier round (--poolparty-linger) have no element
        assert sum(sizes) <= jobs and 3 in sizes and n_submit < jobs, sizes
        # no accounting on SLURM; on SGE one qacct at most per poll, and only in polls where an element
        # left the queue without its end known (docs/sge.md)
        assert not q.calls("sacct") and len(q.calls("qacct")) <= status


def array_size(argv: list[str]) -> int:
    """Elements of one sbatch (``--array=0-2,5``) or qsub (``-t 1-3``) submission; 1 for a plain job."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--array=")), None)
    if spec is None and "-t" in argv:
        spec = argv[argv.index("-t") + 1]
    if spec is None:
        return 1
    n = 0
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


# -- one array per scheduling round ----------------------------------------------------------------
ARRAY_SNAKEFILE = """
    rule all:
        input: expand("out/a{i}.txt", i=range(4)), expand("out/b{i}.txt", i=range(2))

    rule a:
        output: "out/a{i}.txt"
        resources: mem_mb=1000
        shell: "echo {wildcards.i} > {output}"

    rule b:
        output: "out/b{i}.txt"
        resources: mem_mb=2000
        shell: "echo {wildcards.i} > {output}"
"""
ARRAY_PROFILE = """
    executor: poolparty
    jobs: 50
    poolparty-queue: slurm
    poolparty-polling-interval: 1
"""


@pytest.mark.parametrize("array", ["yes", "no"])
def test_jobs_ready_together_go_out_as_one_array_per_resource_set(array, make_queue_under_test, tmp_path):
    q = make_queue_under_test("fake-slurm")
    profile = textwrap.dedent(ARRAY_PROFILE) + f"poolparty-array: {array}\n"
    wd = write_workflow(tmp_path / "wf", ARRAY_SNAKEFILE, profile)
    proc = run_snakemake(wd, "--profile", "profile")  # settings from a profile
    assert proc.returncode == 0, tail(proc)
    assert sorted(p.name for p in (wd / "out").iterdir()) == sorted(
        [f"a{i}.txt" for i in range(4)] + [f"b{i}.txt" for i in range(2)])
    sbatch = q.calls("sbatch")
    mems = sorted(next(a for a in c["argv"] if a.startswith("--mem=")) for c in sbatch)
    if array == "yes":
        # six jobs, ready together: one array per set of resources, not one sbatch per job
        arrays = sorted(next(a for a in c["argv"] if a.startswith("--array=")) for c in sbatch)
        assert arrays == ["--array=0-1", "--array=0-3"], [c["argv"] for c in sbatch]
        assert mems == ["--mem=1908M", "--mem=954M"]
    else:  # plain jobs, one per Snakemake job
        assert not any(a.startswith("--array") for c in sbatch for a in c["argv"])
        assert mems == ["--mem=1908M"] * 2 + ["--mem=954M"] * 4
    assert len(q.calls("squeue")) <= 20  # one query per poll for the whole pool, never one per job
    assert not q.calls("sacct")


# -- Ctrl-C ----------------------------------------------------------------------------------------
SLOW_SNAKEFILE = """
    rule all:
        input: expand("out/{i}.txt", i=range(3))

    rule slow:
        output: "out/{i}.txt"
        shell: "touch started.{wildcards.i}; sleep 120; touch {output}"
"""


@pytest.mark.parametrize("kind", ["fake-slurm", "local"])
def test_ctrl_c_cancels_every_job(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    wd = write_workflow(tmp_path / "wf", SLOW_SNAKEFILE)
    proc = subprocess.Popen([SNAKEMAKE, "--executor", "poolparty", "--poolparty-queue", q.flavor, "-j", "5",
                             "--poolparty-max-running", "3"],
                            cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ), stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(list(wd.glob("started.*"))) == 3, 120, "three running jobs")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Terminating processes on user request" in out, out[-3000:]
    if kind == "fake-slurm":
        def live():
            return [j["id"] for j in q.cluster.jobs() if j["state"] in ("PENDING", "RUNNING", "COMPLETING")]
    else:
        def live():
            return [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(wd))]
    wait_until(lambda: not live(), 30, "no job of the workflow left")
    assert not list((wd / "out").glob("*.txt")) if (wd / "out").exists() else True


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# -- infrastructure failures are the core's, rule failures Snakemake's ------------------------------
INFRA_SNAKEFILE = """
    rule all:
        input: "out/x.txt"

    rule x:
        output: "out/x.txt"
        shell: "sleep 2; touch {output}"
"""


@pytest.mark.parametrize("max_resubmissions", [1, 0])
def test_node_failure_is_resubmitted_silently_or_reported(max_resubmissions, make_queue_under_test, tmp_path):
    q = make_queue_under_test("fake-slurm")
    q.cluster.add_rule(action="node_fail", nth_start=1, after=0.5)
    wd = write_workflow(tmp_path / "wf", INFRA_SNAKEFILE)
    proc = run_snakemake(wd, "--executor", "poolparty", "--poolparty-queue", "slurm", "-j", "5",
                         "--poolparty-max-resubmissions", str(max_resubmissions),
                         "--poolparty-polling-interval", "1", fast_grace=True)
    out = proc.stdout + proc.stderr
    if max_resubmissions:
        assert proc.returncode == 0, tail(proc)
        assert len(q.calls("sbatch")) == 2  # resubmitted by poolparty ...
        assert "Trying to restart" not in out and "Error in rule" not in out  # ... without Snakemake noticing
    else:
        assert proc.returncode != 0
        assert "Error in rule x" in out and "poolparty gave up on job" in out and "NODE_FAIL" in out.upper(), out
        assert len(q.calls("sbatch")) == 1


# -- import cost, discovery and settings ------------------------------------------------------------
IMPORT_PROBE = """
import json, sys, time
events = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.spawn"):
        events.append(event)
import snakemake_interface_executor_plugins.executors.remote  # what Snakemake has imported already
sys.addaudithook(hook)
t = time.perf_counter()
import snakemake_executor_plugin_poolparty
seconds = time.perf_counter() - t
ours = list(events)
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry
plugin = ExecutorPluginRegistry().get_plugin("poolparty")   # discovery, as `snakemake --executor` does
print(json.dumps({"events": ours, "seconds": seconds, "engine": "poolparty.engine" in sys.modules,
                  "file": snakemake_executor_plugin_poolparty.__file__,
                  "settings": plugin.settings_cls.__name__}))
"""


def test_import_runs_no_subprocess_and_plugin_is_discovered():
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["events"] == []  # no subprocess, hence no scheduler call, when Snakemake imports it
    assert not got["engine"]  # poolparty's engine is imported when the executor starts, not before
    assert got["settings"] == "ExecutorSettings"  # discovered by Snakemake's registry
    assert got["seconds"] < 1.0


def test_settings_from_flags_environment_and_defaults(monkeypatch):
    from snakemake.cli import get_argument_parser
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    monkeypatch.setenv("SNAKEMAKE_POOLPARTY_ARRAY", "no")
    monkeypatch.setenv("SNAKEMAKE_POOLPARTY_ACCOUNT", "lab42")
    parser = get_argument_parser()
    plugin = ExecutorPluginRegistry().get_plugin("poolparty")
    s = plugin.get_settings(parser.parse_args(["--executor", "poolparty", "--poolparty-queue", "sge",
                                               "--poolparty-max-running", "7", "--poolparty-keep-logs-days", "0"]))
    assert (s.queue, s.max_running, s.array, s.account, s.keep_logs_days) == ("sge", 7, False, "lab42", 0)
    monkeypatch.delenv("SNAKEMAKE_POOLPARTY_ARRAY")
    defaults = plugin.get_settings(get_argument_parser().parse_args(["--executor", "poolparty"]))
    assert defaults.queue == "local" and defaults.array is True and defaults.max_resubmissions == 3
    assert defaults.fork_jobs is True
    assert plugin.get_settings(get_argument_parser().parse_args(
        ["--executor", "poolparty", "--poolparty-fork-jobs", "no"])).fork_jobs is False
    with pytest.raises(SystemExit):
        get_argument_parser().parse_args(["--executor", "poolparty", "--poolparty-queue", "torque"])


# -- resource translation (core: poolparty.api.workflow_resources) -------------------------------------
def test_snakemake_resources_translate_per_queue():
    from poolparty import ConfigurationError, Resources
    from poolparty.queues import sge
    from poolparty.queues import slurm
    from poolparty.api.workflow_resources import resources_from_workflow

    values = {"threads": 4, "mem_mb": 8000, "mem_mib": 7630, "runtime": 90, "slurm_partition": "short",
              "slurm_account": "lab", "qos": "high", "constraint": "skylake", "gres": "gpu:a100:1",
              "slurm_extra": "--exclusive --comment='two words'", "tmpdir": "/tmp", "disk_mb": 1000,
              "sge_queue": "all.q"}
    r = resources_from_workflow(values, "slurm", Resources(account="default"))
    assert slurm.resource_flags(r.resources) == [
        "--cpus-per-task=4", "--mem=7630M", "--time=0-01:30:00", "--partition=short", "--account=lab", "--qos=high"]
    assert r.resources.extra == ("--constraint=skylake", "--gres=gpu:a100:1", "--exclusive", "--comment=two words")
    assert r.ignored == ("sge_queue",)
    r = resources_from_workflow({"cpus_per_task": 2, "threads": 8, "mem_mb": 1000, "sge_queue": "all.q",
                                 "sge_project": "p1", "sge_extra": "-l scratch=10G", "qos": "x"}, "sge")
    assert sge.resource_flags(r.resources) == ["-pe", "smp", "2", "-l", "h_vmem=477M", "-q", "all.q"]
    assert r.resources.extra == ("-P", "p1", "-l", "scratch=10G")
    assert r.ignored == ("qos",)
    r = resources_from_workflow({"threads": 4, "mem_mb": 4000, "sge_pe": "mpi"}, "sge")
    assert sge.resource_flags(r.resources) == ["-l", "h_vmem=954M"]  # per slot of the named PE
    assert r.resources.extra == ("-pe", "mpi", "4")
    r = resources_from_workflow({"threads": 2, "mem_mb": 1000, "slurm_partition": "x"}, "local",
                                Resources(partition="p"))
    assert (r.resources.cpus, r.resources.memory, r.resources.partition) == (2, 10**9, None)
    with pytest.raises(ConfigurationError, match="--array"):
        resources_from_workflow({"slurm_extra": "--array=1-3"}, "slurm")
    assert resources_from_workflow({"cpus_per_task": -1, "threads": 3}, "slurm").resources.cpus is None


def test_log_retention_keeps_recent_and_live_directories(tmp_path):
    import fcntl

    from snakemake_executor_plugin_poolparty.logs import remove_old_logs

    logs, runs = tmp_path / "poolparty_logs", tmp_path / "poolparty"
    old = time.time() - 10 * 86400
    for d in (logs / "20260101-000000-1", logs / "recent", runs / "run-old", runs / "run-live", runs / "run-new"):
        d.mkdir(parents=True)
        (d / "x.log").write_text("x")
    for d in (logs / "20260101-000000-1", runs / "run-old", runs / "run-live"):
        os.utime(d, (old, old))
    fd = os.open(runs / "run-live" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a pool that is still running
    os.utime(runs / "run-live", (old, old))
    try:
        assert remove_old_logs(logs, runs, 0) == []  # 0 keeps everything
        removed = remove_old_logs(logs, runs, 7)
    finally:
        os.close(fd)
    assert sorted(p.name for p in removed) == ["20260101-000000-1", "run-old"]
    assert sorted(p.name for p in logs.iterdir()) == ["recent"]
    assert sorted(p.name for p in runs.iterdir()) == ["run-live", "run-new"]


# -- what a status check reports (pure: snakemake_executor_plugin_poolparty.status) ------------------
def test_finished_jobs_are_held_back_only_while_a_cluster_burst_goes_on():
    from snakemake_executor_plugin_poolparty.status import hold_back

    assert hold_back([99.5, 99.8], 100.0, burst=True)  # the last result 0.2 s ago: more may come
    assert not hold_back([98.0, 98.5], 100.0, burst=True)  # quiet for 1.5 s: report them
    assert not hold_back([94.0, 99.9], 100.0, burst=True)  # the oldest waited 6 s: the cap
    assert not hold_back([99.9], 100.0, burst=False)  # the local queue reports at once
    assert not hold_back([], 100.0, burst=True)


def test_failure_messages_name_the_job_and_the_reason():
    from concurrent.futures import CancelledError

    from poolparty import CommandFailed, RetryLimitExceeded
    from snakemake_executor_plugin_poolparty.status import failure_message

    gave_up = RetryLimitExceeded({3: "NODE_FAIL on n1"}, {3: [3]}, "/w")
    assert failure_message(gave_up, "pp-1:1.3", 3, 2) == \
        "poolparty gave up on job pp-1:1.3 after 2 resubmission(s): NODE_FAIL on n1. "
    assert failure_message(CancelledError("by Ctrl-C"), "pp-1:1.0", 0, 3) == \
        "poolparty job pp-1:1.0 was cancelled (by Ctrl-C). "
    assert failure_message(None, "pp-1:1.0", 0, 3) == "poolparty job pp-1:1.0 ended without a result. "
    assert failure_message(ValueError("bad"), "pp-1:1.0", 0, 3) == "poolparty job pp-1:1.0 failed: bad. "
    assert failure_message(CommandFailed(3, "snakemake ..."), "pp-1:1.0", 0, 3) == "poolparty job pp-1:1.0 exited with status 3. "


# -- a scheduling round through the core's batching window (snakemake_executor_plugin_poolparty.submission) --
def test_a_round_is_registered_under_pool_batch_task_ids_and_a_refusal_reports_each_job():
    import threading

    from poolparty import Resources, ShellCommand
    from poolparty.api.batching import BatchingWindow
    from poolparty.engine.handle import BatchHandle
    from snakemake_executor_plugin_poolparty.submission import RoundSubmission

    class Engine:
        max_running = 10
        refuse: Optional[BaseException] = None

        def submit(self, shared, chunks, resources, *, kind, give_up_policy):
            if self.refuse is not None:
                raise self.refuse
            assert (kind, give_up_policy) == ("snakemake", "fail_batch")
            handle = BatchHandle(sum(len(c) for c in chunks), "batch 7")
            handle.batch_dir = "/w/batches/7"
            self.handle = handle
            return handle

    registered, errors, wake = [], [], threading.Event()
    engine = Engine()
    sink = RoundSubmission("pp-abc", registered.append, lambda info, msg: errors.append((info.job, msg)), wake)
    window = BatchingWindow(engine, sink, window=None, kind="snakemake", give_up_policy="fail_batch")
    for job in ("a", "b"):
        window.add(job, ShellCommand("true"), Resources(cpus=1))
    window.flush()
    assert [(i.job, i.external_jobid, i.aux["task"]) for i in registered] == [("a", "pp-abc:7.0", 0),
                                                                              ("b", "pp-abc:7.1", 1)]
    assert not wake.is_set()
    engine.handle.finish(None)  # the batch ended: the status loop is woken at once
    assert wake.is_set()
    engine.refuse = ValueError("no partition 'gpu'")
    window.add("c", ShellCommand("true"), Resources(cpus=2))
    window.flush()
    assert errors == [("c", "poolparty: submission failed: no partition 'gpu'. ")]


# -- several Snakemake jobs per element, each in a forked child (snakemake_executor_plugin_poolparty.element) --
FORKED_SNAKEFILE = """
    import json, sys

    N = 4

    rule all:
        input: expand("a/{i}.json", i=range(N)), expand("b/{i}.txt", i=range(N)), expand("c/{i}.txt", i=range(N))

    rule a:
        output: "a/{i}.json"
        run:
            # forked from an element's warm Snakemake process, which runs the plugin's element module
            with open(output[0], "w") as f:
                json.dump({"forked": "snakemake_executor_plugin_poolparty.element" in sys.modules}, f)

    rule b:
        output: "b/{i}.txt"
        resources: mem_mb=lambda wildcards, attempt: 600 * attempt
        shell: "echo ran >> count.b{wildcards.i}; echo 'marker-b{wildcards.i}-mem{resources.mem_mb}'; "
               "test {wildcards.i} != 1 || test {resources.mem_mb} -ge 1200; echo ok > {output}"

    rule c:
        output: "c/{i}.txt"
        shell: "echo ran >> count.c{wildcards.i}; echo 'marker-c{wildcards.i}'; "
               "if [ {wildcards.i} = 2 ]; then exit 3; fi; echo ok > {output}"
"""


def test_forked_jobs_keep_their_own_outcome_log_attempt_and_retries(tmp_path):
    wd = write_workflow(tmp_path / "wf", FORKED_SNAKEFILE)
    proc = run_snakemake(wd, "--executor", "poolparty", "--poolparty-queue", "local", "-j", "12",
                         "--retries", "1", "--keep-going", "--poolparty-max-running", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, tail(proc)  # c2 fails on both attempts
    # each job ran in a child forked from an element's Snakemake process (not `python -m snakemake`)
    assert all(json.loads((wd / "a" / f"{i}.json").read_text())["forked"] for i in range(4)), out
    # b1 failed on attempt 1 (600 MB), Snakemake retried it alone with attempt 2 (1200 MB)
    runs = {name: len((wd / f"count.{name}").read_text().split()) for name in
            [f"b{i}" for i in range(4)] + [f"c{i}" for i in range(4)]}
    assert runs == {"b0": 1, "b1": 2, "b2": 1, "b3": 1, "c0": 1, "c1": 1, "c2": 2, "c3": 1}, runs
    assert sorted(p.name for p in (wd / "b").iterdir()) == [f"{i}.txt" for i in range(4)]
    assert sorted(p.name for p in (wd / "c").iterdir()) == ["0.txt", "1.txt", "3.txt"]  # --keep-going
    logs = wd / ".snakemake" / "poolparty_logs"
    b1 = list(logs.glob("*/b.*.attempt1.log"))
    assert len(b1) == 1 and not list(logs.glob("*/b.*.attempt2.log")), out
    assert "marker-b1-mem600" in b1[0].read_text()
    c2 = sorted(logs.glob("*/c.*.log"))
    assert [p.name.rsplit(".", 2)[-2] for p in c2] == ["attempt1", "attempt2"], out
    for path in [*b1, *c2]:  # each log holds its own job's output only, though elements ran several
        text = path.read_text()
        own = "marker-b1" if path in b1 else "marker-c2"
        others = [m for m in ("marker-b0", "marker-b2", "marker-b3", "marker-c0", "marker-c1", "marker-c3")
                  if m in text]
        assert own in text and not others, (path, text[-2000:])
        assert str(path) in out  # handed to Snakemake (aux_logs)
    assert out.count("Error in rule c") == 2 and out.count("Error in rule b") == 1, out


CHAIN_SNAKEFILE = """
    import json, os

    STEPS = 6

    rule all:
        input: f"s{STEPS - 1}.json"

    rule first:
        output: "s0.json"
        run:
            json.dump({"element": os.getppid()}, open(output[0], "w"))

    rule step:
        input: lambda wc: f"s{int(wc.i) - 1}.json"
        output: "s{i}.json"
        run:
            # ready only once the step before it is done: each goes out in a scheduling round of its own
            json.dump({"element": os.getppid()}, open(output[0], "w"))
"""


def test_a_chain_of_jobs_runs_in_fewer_elements_than_jobs(tmp_path):
    """Each job of a chain is a batch of its own; a warm element takes the next one (``--poolparty-linger``)
    instead of a new job that imports Snakemake again."""
    wd = write_workflow(tmp_path / "wf", CHAIN_SNAKEFILE)
    proc = run_snakemake(wd, "--executor", "poolparty", "--poolparty-queue", "local", "-j", "4",
                         "--poolparty-linger", "30")
    assert proc.returncode == 0, tail(proc)
    elements = [json.loads((wd / f"s{i}.json").read_text())["element"] for i in range(6)]
    assert len(set(elements)) < 6, elements  # forked from the same warm element, not one job each
    assert len(set(elements)) <= 2, elements
    assert not list((wd / ".snakemake" / "poolparty").glob("run-*")), "the run directory was not removed"


def test_an_element_compiles_the_patterns_its_children_compiled():
    """A child reports the text patterns in ``re``'s cache; the element compiles them before the next
    fork, so the next child finds them cached (measured: 0.061 -> 0.044 CPU-s per forked job)."""
    import re

    from snakemake_executor_plugin_poolparty import element

    pattern = r"(?P<sample>[^/]+)/poolparty-only-\d+\.txt$"
    re.purge()
    assert (pattern, 0) not in element._cached_patterns()
    re.compile(pattern)
    reported = json.dumps({"modules": [], "patterns": element._cached_patterns()}).encode()  # as a child does
    re.purge()
    element._to_compile.extend(element._read_learned(reported)["patterns"])
    element._compile_learned()
    assert (pattern, 0) in element._cached_patterns()
    assert element._read_learned(b"") == {} and element._read_learned(b"garbage") == {}


def test_only_a_plain_snakemake_command_line_runs_in_a_forked_child():
    from snakemake_executor_plugin_poolparty.commands import snakemake_argv

    py = sys.executable
    assert snakemake_argv(f"{py} -m snakemake --target-jobs 'a:i=1' --cores 'all' --mode 'remote'", py) == [
        "--target-jobs", "a:i=1", "--cores", "all", "--mode", "remote"]
    assert snakemake_argv(f"module load x && {py} -m snakemake --cores 1", py) is None  # precommand: a shell
    assert snakemake_argv(f"{py} -m snakemake --cores 1 && touch done", py) is None  # suffix
    assert snakemake_argv("python -m snakemake --cores 1", "/opt/other/python3") is None  # another interpreter
    assert snakemake_argv(f"{py} -m other --cores 1", py) is None
    assert snakemake_argv(f"{py} -m snakemake --target-jobs 'unclosed", py) is None


# -- parallel and GPU resources, as the SLURM executor plugin documents them (pure, on literal input) --
def test_mpi_tasks_nodes_and_gpu_model_render_into_the_job_argv():
    from pathlib import Path as P

    from poolparty import ConfigurationError
    from poolparty.api.workflow_resources import resources_from_workflow
    from poolparty.queues import sge, slurm

    def sbatch(values):
        return slurm.dry_run_argv(resources_from_workflow(values, "slurm").resources, P("/s.sh"), P("/w"))[4:-1]

    assert sbatch({"threads": 1, "mpi": "srun", "tasks": 2, "nodes": 1, "constraint": "ib"}) == [
        "--cpus-per-task=1", "--constraint=ib", "--nodes=1", "--ntasks=2"]
    assert sbatch({"mpi": "mpirun", "tasks_per_node": 4, "nodes": 2}) == ["--nodes=2", "--ntasks-per-node=4"]
    assert sbatch({"tasks": 3}) == ["--ntasks=3"]  # a serial rule may ask for tasks too (no launcher)
    assert sbatch({"gpu": 2, "gpu_model": "a100"}) == ["--gpus=a100:2"]
    assert sbatch({"gpu_model": "a100"}) == ["--gpus=a100:1"]
    assert sbatch({"gpu": 2}) == ["--gpus=2"]
    for bad, why in (({"mpi": "srun"}, "needs tasks=N"), ({"mpi": "srun", "tasks": 1}, "single task"),
                     ({"mpi": "srun", "tasks": 2, "tasks_per_node": 2}, "give one of them"),
                     ({"nodes": 0}, ">= 1"), ({"tasks": "two"}, "must be a number")):
        with pytest.raises(ConfigurationError, match=why):
            resources_from_workflow(bad, "slurm")
    # SGE: the tasks are slots of the named parallel environment; what it cannot place is refused
    r = resources_from_workflow({"mpi": "mpirun", "tasks": 4, "threads": 2, "mem_mb": 8000, "sge_pe": "mpi"}, "sge")
    assert sge.resource_flags(r.resources) == ["-l", "h_vmem=954M"] and r.resources.extra == ("-pe", "mpi", "8")
    assert resources_from_workflow({"gpu_model": "a100", "gpu": 1}, "sge").ignored == ("gpu_model",)
    for bad in ({"tasks": 2}, {"nodes": 2, "sge_pe": "mpi"}, {"tasks_per_node": 2, "sge_pe": "mpi"}):
        with pytest.raises(ConfigurationError, match="parallel environment"):
            resources_from_workflow(bad, "sge")
    # this machine: the tasks' CPUs add up; several nodes cannot be had
    assert resources_from_workflow({"mpi": "mpirun", "tasks": 3, "threads": 2}, "local").resources.cpus == 6
    with pytest.raises(ConfigurationError, match="this machine only"):
        resources_from_workflow({"nodes": 2}, "local")


MPI_SNAKEFILE = """
    rule all:
        input: "out/hosts.txt"

    rule mpi_like:
        output: "out/hosts.txt"
        resources: mpi="srun", tasks=2
        shell: "{resources.mpi} -n {resources.tasks} sh -c 'echo task $SLURM_PROCID' | sort > {output}"
"""


def test_a_two_task_srun_rule_runs_on_real_slurm(tmp_path):
    require_or_skip(slurm_available(), "real SLURM")
    wd = write_workflow(tmp_path / "wf", MPI_SNAKEFILE)
    proc = run_snakemake(wd, "--executor", "poolparty", "--poolparty-queue", "slurm", "-j", "2",
                         "--poolparty-polling-interval", "2", timeout=300)
    assert proc.returncode == 0, tail(proc)
    assert (wd / "out" / "hosts.txt").read_text().split("\n")[:2] == ["task 0", "task 1"]
