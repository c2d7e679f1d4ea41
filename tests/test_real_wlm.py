"""Scenarios on the real single-node SLURM and SGE (ci/start-*.sh): what the fakes claim, checked
against the real daemons. Each records jobs submitted, resubmissions, scheduler calls and wall time."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

import poolparty
from conftest import measure, probe, wait_until
from test_behaviour import RunningSampler, slow_square


def trivial(x: int) -> int:
    return x + 1


def allocate(args):
    """Allocates ``mb`` MiB, then returns it; with too little memory, the cgroup kills the job."""
    mb, marker_dir = args
    import uuid
    Path(marker_dir, f"0-{uuid.uuid4().hex}").touch()
    block = bytearray(mb * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    return len(block) // 2**20


def sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.fixture
def markers(tmp_path):
    d = tmp_path / "markers"
    d.mkdir()
    return d


def run(cmd: list[str]) -> str:
    return subprocess.run([probe(cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_five_thousand_tasks_in_chunks_with_max_running(kind, make_queue_under_test, scenario):
    q = make_queue_under_test(kind)
    with poolparty.Pool(max_running=8, **q.pool_options()) as pool:
        sampler = RunningSampler(q, pool)
        sampler.start()
        result = pool.map(trivial, range(5000), chunksize=50)  # 100 chunks: indices 0..99 < MaxArraySize 101
        sampler.stop.set()
        sampler.join()
        measure(scenario, q, pool)
    scenario["peak_running"] = sampler.peak
    assert result == [x + 1 for x in range(5000)]
    assert 1 <= sampler.peak <= 8
    assert scenario["submissions"] == 1 and scenario["resubmissions"] == 0
    assert scenario["pool_status_queries"] == scenario["polls"]


def test_slurm_array_split_at_max_array_size(make_queue_under_test, scenario):
    q = make_queue_under_test("slurm")
    out = run(["scontrol", "show", "config"])
    max_size = int(next(l.split("=")[1] for l in out.splitlines() if l.startswith("MaxArraySize")))
    n_chunks = 1000
    with poolparty.Pool(max_running=16, **q.pool_options()) as pool:
        result = pool.map(trivial, range(n_chunks), chunksize=1)
        measure(scenario, q, pool)
    assert result == [x + 1 for x in range(n_chunks)]
    expected = -(-n_chunks // max_size)
    assert scenario["calls"]["sbatch"] == expected == scenario["submissions"]
    scenario["max_array_size"] = max_size


def test_slurm_requeue_and_hold_are_not_errors(make_queue_under_test, markers, scenario):
    q = make_queue_under_test("slurm")
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        pending = pool.map_async(slow_square, [(x, str(markers), 4.0) for x in range(4)], chunksize=1)
        running = wait_until(lambda: q.running_elements(pool), 60, "a running element")
        run(["scontrol", "requeue", running[0]])  # back to PENDING (BeginTime), then runs again
        jobs = run(["squeue", "--noheader", "--array", f"--name={pool.engine.name}", "--states=PENDING",
                    "--format=%i"]).split()
        held = [j for j in jobs if j != running[0]]
        if held:
            run(["scontrol", "hold", held[0]])
            time.sleep(8)  # longer than the grace periods: a hold is waited on
            run(["scontrol", "release", held[0]])
        assert pending.get(timeout=300) == [x * x for x in range(4)]
        measure(scenario, q, pool)
    scenario["held"] = bool(held)
    assert scenario["resubmissions"] == 0


def test_slurm_walltime_overrun_is_resubmitted_with_more_walltime(make_queue_under_test, scenario):
    q = make_queue_under_test("slurm")
    with poolparty.Pool(max_running=1, walltime=60, **q.pool_options()) as pool:
        # 95 s overruns 60 s even though SLURM enforces limits up to ~30 s late; it fits the escalated 120 s
        assert pool.map(sleeper, [95.0]) == [95.0]
        measure(scenario, q, pool)
    sbatch = [c["argv"] for c in q.calls("sbatch")]
    assert "--time=0-00:01:00" in sbatch[0] and "--time=0-00:02:00" in sbatch[1]
    assert scenario["resubmissions"] == 1


@pytest.mark.sge
def test_sge_walltime_overrun_is_read_from_qacct_and_resubmitted_with_more_walltime(make_queue_under_test, scenario):
    """h_rt kills a task (qacct: failed 37, exit 137) and qstat forgets it at once: qacct tells the
    walltime kill apart from a vanished job, and the chunk comes back with twice the walltime."""
    q = make_queue_under_test("sge")
    # no walltime warning: once a job caught its s_rt signal, SGE 8.1.9 delays the h_rt kill when the lead
    # is shorter than the queue's notify time (docs/sge.md); this test is about the kill
    with poolparty.Pool(max_running=1, walltime=10, walltime_signal_lead=0, **q.pool_options()) as pool:
        # 14 s overruns h_rt=10 s (SGE kills about a second late) and fits the escalated 20 s
        assert pool.map(sleeper, [14.0]) == [14.0]
        measure(scenario, q, pool)
    limits = [a for c in q.calls("qsub") for a in c["argv"] if "h_rt=" in a]
    assert "h_rt=0:00:10" in limits[0] and "h_rt=0:00:20" in limits[1], limits
    assert scenario["resubmissions"] == 1
    assert any(c["argv"][:1] == ["-j"] for c in q.calls("qacct"))


@pytest.mark.sge
def test_sge_task_over_h_vmem_is_resubmitted_with_more_memory(make_queue_under_test, markers, scenario):
    """h_vmem is an address-space rlimit: the task's allocation fails with MemoryError (qacct: failed 0,
    exit 1), the worker records the chunk as out of memory, and it comes back with twice the h_vmem.
    (200M leaves room for Python and the worker, tried by hand with qsub; 300 MiB fits in 400M.)"""
    q = make_queue_under_test("sge")
    with poolparty.Pool(max_running=1, memory="200MB", **q.pool_options()) as pool:
        assert pool.map(allocate, [(1, str(markers)), (300, str(markers))], chunksize=2) == [1, 300]
        measure(scenario, q, pool)
    limits = [a for c in q.calls("qsub") for a in c["argv"] if "h_vmem=" in a]
    scenario["h_vmem"] = limits
    assert limits == ["h_vmem=200M", "h_vmem=400M"], limits
    assert scenario["resubmissions"] == 1
    assert len(list(markers.iterdir())) == 3  # the first task ran once: its result was kept


def test_slurm_out_of_memory_is_resubmitted_with_more_memory(make_queue_under_test, markers, scenario):
    q = make_queue_under_test("slurm")
    cgroup = "cgroup" in run(["scontrol", "show", "config"])
    with poolparty.Pool(max_running=1, memory="100MB", **q.pool_options()) as pool:
        assert pool.map(allocate, [(150, str(markers))]) == [150]
        measure(scenario, q, pool)
    mems = [a for c in q.calls("sbatch") for a in c["argv"] if a.startswith("--mem=")]
    assert mems[0] == "--mem=100M" and mems[1] == "--mem=200M", (mems, cgroup)
    assert scenario["resubmissions"] == 1


def test_slurm_drained_node_and_killed_slurmd(make_queue_under_test, markers, scenario):
    q = make_queue_under_test("slurm")
    node = run(["sinfo", "-h", "-o", "%N"]).strip()
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        pending = pool.map_async(slow_square, [(x, str(markers), 3.0) for x in range(4)], chunksize=1)
        wait_until(lambda: q.running_elements(pool), 60, "a running element")
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=poolparty-test"],
                       check=True, timeout=30)
        time.sleep(6)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=True, timeout=30)
        # slurmd killed -9 and restarted while jobs run: SLURM requeues them, or poolparty resubmits
        pid = int(Path("/run/slurmd.pid").read_text().strip())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd"  # never a recycled pid
        os.kill(pid, 9)
        time.sleep(3)
        subprocess.run(["slurmd"], check=True, timeout=30)
        try:
            assert pending.get(timeout=400) == [x * x for x in range(4)]
        finally:
            wait_until(lambda: run(["sinfo", "-h", "-o", "%T"]).strip() in ("idle", "mixed", "allocated"), 120,
                       "the node back in service")
        measure(scenario, q, pool)


def test_sge_error_state_and_disabled_queue(make_queue_under_test, markers, scenario, tmp_path):
    q = make_queue_under_test("sge")
    missing = tmp_path / "not-yet"
    with poolparty.Pool(max_running=2, **q.pool_options(extra=["-o", f"{missing}/x.log"])) as pool:
        # the output directory does not exist: the job goes to Eqw; it is deleted and resubmitted
        pending = pool.map_async(slow_square, [(x, str(markers), 1.0) for x in range(2)], chunksize=1)
        # this pool's job in Eqw (qstat shows names cut to 10 characters; other users' jobs may be in Eqw too)
        mine = pool.engine.name[:10]
        wait_until(lambda: any(mine in line and "Eqw" in line for line in run(["qstat"]).splitlines())
                   or pool.engine.stats["resubmissions"], 60, "Eqw")
        missing.mkdir()
        assert pending.get(timeout=300) == [0, 1]
        measure(scenario, q, pool)
    assert scenario["resubmissions"] >= 1
    queue_instance = next(l.split()[0] for l in run(["qstat", "-f"]).splitlines() if l.startswith("all.q@"))
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        subprocess.run(["qmod", "-d", queue_instance], capture_output=True, timeout=30)
        try:
            pending = pool.map_async(sleeper, [0.5, 0.5], chunksize=1)
            time.sleep(8)  # queue disabled: jobs wait in qw, which is not an error
            assert not pending.ready()
        finally:
            subprocess.run(["qmod", "-e", queue_instance], capture_output=True, timeout=30)
        assert pending.get(timeout=300) == [0.5, 0.5]
        assert pool.engine.stats["resubmissions"] == 0


FLAKY_SHIM = """#!{python}
import os, sys
count = {count!r}
n = int(open(count).read()) if os.path.exists(count) else 0
open(count, "w").write(str(n + 1))
if n < {fail}:
    sys.stderr.write("{cmd}: error: Socket timed out on send/recv operation\\n")
    sys.exit(1)
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_transient_cli_failures_are_retried_on_the_real_scheduler(kind, make_queue_under_test, markers,
                                                                  scenario, tmp_path, monkeypatch):
    q = make_queue_under_test(kind)
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    import sys
    for cmd in (("sbatch", "squeue") if kind == "slurm" else ("qsub", "qstat")):
        shim = flaky / cmd
        shim.write_text(FLAKY_SHIM.format(python=sys.executable, count=str(tmp_path / f"{cmd}.count"), fail=2,
                                          cmd=cmd, real=str(q.tmp / "shim" / cmd)))
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{flaky}{os.pathsep}{os.environ['PATH']}")
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        assert pool.map(slow_square, [(x, str(markers), 1.0) for x in range(4)], chunksize=1) == [0, 1, 4, 9]
        measure(scenario, q, pool)
    assert scenario["submissions"] == 1
    assert scenario["pool_status_queries"] == scenario["polls"]  # one query per poll after the failures


def _pool_in_process(kind: str, root: str, barrier, out: str) -> None:
    barrier.wait()  # 20 pools start at the same moment, in one parent directory
    with poolparty.Pool(queue=kind, max_running=2, work_root=root, polling_interval=2.0) as pool:
        Path(out).write_text(repr(pool.map(trivial, range(6), chunksize=3)))


@pytest.mark.parametrize("kind", ["slurm", "sge"])
def test_twenty_pools_at_once_in_one_parent_directory(kind, make_queue_under_test, tmp_path, scenario):
    make_queue_under_test(kind)  # skip or fail when the scheduler is missing
    root = tmp_path / "parent"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(20)
    procs = [ctx.Process(target=_pool_in_process, args=(kind, str(root), barrier, str(tmp_path / f"out{i}")))
             for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    codes = [p.exitcode for p in procs]
    assert codes == [0] * 20, codes
    assert [(tmp_path / f"out{i}").read_text() for i in range(20)] == [repr([x + 1 for x in range(6)])] * 20
    assert list(root.iterdir()) == []
    scenario.update(queue=kind, pools=20)
