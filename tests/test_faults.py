"""Fault injection through the fake schedulers: what real daemons cannot do on one machine on demand."""
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from pathlib import Path

import pytest

import poolparty
from conftest import FAKE_KINDS, FIRST_INDEX, STATUS_COMMAND, SUBMIT_COMMAND, pool_status_calls, wait_until
from test_behaviour import runs_per_task, slow_square


def run_map(q, markers, n=6, seconds=0.5, chunksize=1, timeout=180, **opts):
    # a fault rule targets one array index; with claims that element may find its chunk already run by
    # another and leave before the fault fires (claims under faults: tests/test_chunk_claims.py)
    opts.setdefault("claim_chunks", False)
    with poolparty.Pool(**q.pool_options(**opts)) as pool:
        result = pool.map_async(slow_square, [(x, str(markers), seconds) for x in range(n)],
                                chunksize=chunksize).get(timeout)
        return result, dict(pool.engine.stats)


@pytest.fixture
def markers(tmp_path):
    d = tmp_path / "markers"
    d.mkdir()
    return d


class RunningPeak:
    """The most elements the fake scheduler ran at once, sampled from its state while a test runs."""

    def __init__(self, cluster):
        self.cluster, self.value = cluster, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, sum(1 for j in self.cluster.jobs() if j.get("state") == "RUNNING"))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def array_index(q, chunk: int) -> int:
    """The scheduler's array index of a chunk of a small map (SGE and LSF count from 1)."""
    return chunk + FIRST_INDEX[q.flavor]


def sub_argvs(q):
    return [c["argv"] for c in q.calls(SUBMIT_COMMAND[q.flavor])]


@pytest.mark.parametrize("kind", FAKE_KINDS)
@pytest.mark.parametrize("action", ["node_fail", "vanish", "preempt", "kill"])
def test_infrastructure_failures_are_resubmitted(kind, action, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    if action == "preempt" and q.flavor == "sge":
        action = "requeue"
    q.cluster.add_rule(action, index=array_index(q, 1), after=0.2)
    result, stats = run_map(q, markers, max_running=3)
    assert result == [x * x for x in range(6)]
    assert set(runs_per_task(markers)) == set(range(6))
    # qsub -r y: SGE reruns a job of a failed node, PBS one of a failed node or preempted by requeue
    rerun_by_scheduler = action == "requeue" or (action == "node_fail" and q.flavor in ("sge", "pbs")) \
        or (action == "preempt" and q.flavor == "pbs")
    expected = 0 if rerun_by_scheduler else 1
    assert stats["resubmissions"] == expected
    assert len(sub_argvs(q)) == 1 + expected


#: how each scheduler's submission says 100 MB then 200 MB, and 60 s then 120 s
MEMORY_FLAGS = {"slurm": ("--mem=100M", "--mem=200M"), "pbs": ("select=1:ncpus=1:mem=100mb", "select=1:ncpus=1:mem=200mb"),
                "lsf": ("100MB", "200MB"), "sge": ("h_vmem=100M", "h_vmem=200M")}
WALLTIME_FLAGS = {"slurm": ("--time=0-00:01:00", "--time=0-00:02:00"), "pbs": ("walltime=0:01:00", "walltime=0:02:00"),
                  "lsf": ("1", "2"), "sge": ("h_rt=0:01:00", "h_rt=0:02:00")}


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_out_of_memory_is_resubmitted_with_more_memory(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    q.cluster.add_rule("oom", index=array_index(q, 0), after=0.2)
    result, stats = run_map(q, markers, n=3, memory="100MB", max_running=3)
    assert result == [0, 1, 4]
    first, second = sub_argvs(q)
    before, after = MEMORY_FLAGS[q.flavor]
    assert any(before in a for a in first) and any(after in a for a in second)
    assert stats["resubmissions"] == 1


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_timeout_is_resubmitted_with_more_walltime(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    q.cluster.add_rule("timeout", index=array_index(q, 0), after=0.2)
    result, stats = run_map(q, markers, n=3, walltime=60, max_running=3)
    assert result == [0, 1, 4]
    first, second = sub_argvs(q)
    before, after = WALLTIME_FLAGS[q.flavor]
    assert any(a == before or a.startswith(before) or f",{before}" in a for a in first)
    assert any(a == after or a.startswith(after) or f",{after}" in a for a in second)


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_a_held_job_is_waited_on_not_resubmitted(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)

    def hold_then_release():
        jobs = wait_until(lambda: [j for j in q.cluster.jobs() if j.get("state") == "PENDING"], 30,
                          "a pending element")
        job_id = jobs[0]["id"]
        q.cluster.inject(job_id, "hold")
        time.sleep(4)  # longer than the vanish and result grace periods
        q.cluster.inject(job_id, "release")

    t = threading.Thread(target=hold_then_release, daemon=True)
    t.start()
    result, stats = run_map(q, markers, n=4, seconds=1.0, max_running=1)
    t.join()
    assert result == [x * x for x in range(4)]
    assert stats["resubmissions"] == 0


def test_sge_error_state_is_deleted_and_resubmitted(make_queue_under_test, markers):
    q = make_queue_under_test("fake-sge")
    q.cluster.add_rule("eqw", index=array_index(q, 2), after=0.0)
    result, stats = run_map(q, markers, n=4, max_running=4)
    assert result == [x * x for x in range(4)]
    assert stats["resubmissions"] == 1
    assert any(c["argv"] for c in q.calls("qdel"))


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_transient_cli_errors_are_retried_with_one_query_per_poll(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    submit, status = SUBMIT_COMMAND[q.flavor], STATUS_COMMAND[q.flavor]
    q.cluster.set_cli_failures(**{submit: 2, status: 2})
    result, stats = run_map(q, markers, n=4, seconds=1.5, max_running=2)
    assert result == [x * x for x in range(4)]
    assert len(q.calls(submit)) == 3  # two transient failures, then the one submission
    assert stats["submissions"] == 1
    # every poll is one query; only the two transient failures were repeated (PBS's go to the server
    # query its adapter makes once before it submits)
    assert sum(c["rc"] != 0 for c in q.calls(status)) == 2
    polls = pool_status_calls(q)
    assert len(polls) == stats["polls"] + sum(c["rc"] != 0 for c in polls)


def test_a_lost_submission_reply_leaves_no_duplicate_behind(make_queue_under_test, markers):
    q = make_queue_under_test("fake-slurm")
    q.cluster.set_cli_failures(lost_reply=True, sbatch=1)  # sbatch worked, its answer was lost
    result, stats = run_map(q, markers, n=4, seconds=0.5, max_running=4)
    assert result == [x * x for x in range(4)]
    wait_until(lambda: not [j for j in q.cluster.jobs() if j.get("state") in ("PENDING", "RUNNING")], 30,
               "the duplicate array to be cancelled")


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_slow_scheduler_cli_still_one_query_per_poll(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    q.cluster.set_cli_delay(**{STATUS_COMMAND[q.flavor]: 1.0})
    result, stats = run_map(q, markers, n=4, seconds=1.0, max_running=4)
    assert result == [x * x for x in range(4)]
    assert len(pool_status_calls(q)) == stats["polls"]


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_retry_limit_names_the_tasks_and_cancels_the_rest(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    q.cluster.add_rule("node_fail", index=array_index(q, 0), after=0.1, times=100)
    # claims off: otherwise another element may run chunk 0 when its own element dies before claiming it
    # (SGE and PBS requeue a job of a failed node themselves: bounded by max_preemptions, not max_resubmissions)
    retry = poolparty.RetryPolicy(max_resubmissions=2, max_preemptions=2)
    with poolparty.Pool(**q.pool_options(max_running=2, retry=retry, claim_chunks=False)) as pool:
        with pytest.raises(poolparty.RetryLimitExceeded) as err:
            pool.map(slow_square, [(x, str(markers), 3.0) for x in range(8)], chunksize=1)
        name = pool.engine.name
        msg = str(err.value)
    bound = "max_preemptions=2" if q.flavor in ("sge", "pbs") else "max_resubmissions=2"
    assert "chunk 0 (tasks 0)" in msg and bound in msg and "kept" in msg, msg
    assert list(err.value.failures) == [0]
    # every other job of the pool is cancelled: nothing of it left pending or running
    wait_until(lambda: not [j for j in q.cluster.jobs() if j.get("name") == name
                            and j.get("state") in ("PENDING", "RUNNING")], 20,
               "the rest of the pool to be cancelled")


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_arrays_are_split_at_the_schedulers_maximum(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind, max_array_size=11)
    result, stats = run_map(q, markers, n=30, seconds=0.0, max_running=8)
    assert result == [x * x for x in range(30)]
    argvs = sub_argvs(q)
    assert len(argvs) == 3 and stats["submissions"] == 3
    if q.flavor == "slurm":
        specs = [a for argv in argvs for a in argv if a.startswith("--array=")]
        indices = [int(x) for spec in specs for x in re.findall(r"\d+", spec.split("%")[0])]
        assert max(indices) <= 10


@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_plain_job_mode_one_job_per_chunk_throttled_by_the_dispatcher(kind, make_queue_under_test, markers):
    q = make_queue_under_test(kind)
    peak = RunningPeak(q.cluster)
    result, stats = run_map(q, markers, n=5, seconds=0.7, max_running=2, array=False)
    peak.stop()
    assert result == [x * x for x in range(5)]
    argvs = sub_argvs(q)
    assert len(argvs) == 5 and not any(a.startswith("--array") or a == "-t" for argv in argvs for a in argv)
    assert 1 <= peak.value <= 2


def test_a_resubmitted_job_pending_again_is_not_a_scheduler_requeue(make_queue_under_test, markers):
    """After poolparty resubmits a chunk whose job had been running, the new job's PENDING state
    must not count as the scheduler requeueing it (that would spend the budget twice)."""
    q = make_queue_under_test("fake-slurm")
    q.cluster.add_rule("kill", index=0, after=1.0)
    # each job takes all 8 fake CPUs: the resubmitted job waits PENDING while chunk 1 runs
    result, stats = run_map(q, markers, n=2, seconds=3.0, max_running=2, max_resubmissions=1, cpus=8)
    assert result == [0, 1]
    assert stats["resubmissions"] == 1


def exit_quietly_once(args):
    """Task 1's first run ends its worker with status 0 before anything is published."""
    x, marker_dir = args
    first = not any(Path(marker_dir).glob(f"{x}-*"))
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    if x == 1 and first:
        os._exit(0)
    return x


def test_a_job_the_scheduler_killed_is_resubmitted_without_the_long_result_grace(make_queue_under_test, markers):
    """result_grace covers a finished job's result still crossing the filesystem; a job the scheduler
    killed had no time to publish, so it is resubmitted after killed_result_grace instead."""
    q = make_queue_under_test("fake-slurm")
    q.timing.update(result_grace=30.0, killed_result_grace=1.0)
    q.cluster.add_rule("node_fail", index=1, after=0.2)
    started = time.monotonic()
    result, stats = run_map(q, markers, n=3, max_running=3, polling_interval=0.5)
    assert result == [0, 1, 4] and stats["resubmissions"] == 1
    assert time.monotonic() - started < 20  # not the 30 s result_grace


def test_a_job_that_ended_by_itself_without_a_result_gets_the_result_grace(make_queue_under_test, markers):
    q = make_queue_under_test("fake-slurm")
    q.timing.update(result_grace=4.0, killed_result_grace=0.5)
    started = time.monotonic()
    with poolparty.Pool(**q.pool_options(max_running=3, polling_interval=0.5)) as pool:
        assert pool.map(exit_quietly_once, [(x, str(markers)) for x in range(3)], chunksize=1) == [0, 1, 2]
        assert pool.engine.stats["resubmissions"] == 1
    assert time.monotonic() - started >= 4.0


def test_an_old_pbs_without_array_limits_gets_no_more_subjobs_than_slots(make_queue_under_test, markers):
    """PBS before 2020 has no max_run_subjobs: each array holds at most the free slots, never more run."""
    q = make_queue_under_test("fake-pbs", version="19.1.3")
    peak = RunningPeak(q.cluster)
    result, stats = run_map(q, markers, n=6, seconds=0.5, max_running=2)
    peak.stop()
    assert result == [x * x for x in range(6)]
    argvs = sub_argvs(q)
    assert len(argvs) >= 3 and not any(a.startswith("max_run_subjobs") for argv in argvs for a in argv)
    assert all(argv[argv.index("-J") + 1].count("-") == 1 for argv in argvs if "-J" in argv)
    assert 1 <= peak.value <= 2


def wait_for_release(args):
    """Touches a marker, then (``release`` given) waits until that file exists; returns x."""
    x, marker_dir, release = args
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    while release and not Path(release).exists():
        time.sleep(0.05)
    return x


def test_sge_asks_qacct_only_for_elements_whose_chunks_have_no_result(make_queue_under_test, markers, tmp_path):
    """Three elements end with their results while a fourth runs on: SGE drops them from qstat, but their
    ends do not matter any more, so no poll asks qacct about them."""
    q = make_queue_under_test("fake-sge")
    release = tmp_path / "release"
    with poolparty.Pool(**q.pool_options(max_running=4, claim_chunks=False)) as pool:
        pending = pool.map_async(wait_for_release, [(x, str(markers), str(release) if x == 3 else "")
                                                    for x in range(4)], chunksize=1)
        wait_until(lambda: len(runs_per_task(markers)) == 4 and sum(
            1 for j in q.cluster.jobs() if j.get("state") == "RUNNING") == 1, 30, "three elements ended")
        polls = pool.engine.stats["polls"]
        wait_until(lambda: pool.engine.stats["polls"] >= polls + 4, 30, "four more polls")
        qacct_calls = len(q.calls("qacct"))
        release.touch()
        assert pending.get(60) == [0, 1, 2, 3]
    assert qacct_calls == 0, q.calls("qacct")
