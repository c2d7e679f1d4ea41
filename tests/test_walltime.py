"""Walltime and preemption without lost work or burned retries (docs/walltime.md).

A job is warned a lead before its walltime; a task that saves checkpoints (``poolparty.checkpoint``) is
continued in the next job from its last state, its finished steps not redone; one that does not is killed
at the walltime and rerun from its start with more walltime. Neither, nor a scheduler requeue, spends
``max_resubmissions``: every map here runs with ``max_resubmissions=0``.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import pytest

import poolparty
from conftest import FAKE_KINDS, probe, wait_until
from poolparty.dispatch.submitter import warning_lead
from poolparty.resources import Resources
from poolparty.retry import ActionKind, FailureClass, RetryPolicy
from test_behaviour import runs_per_task, slow_square
from test_faults import array_index


# -- pure decisions ----------------------------------------------------------------------------------
def test_warning_lead_is_a_tenth_of_the_walltime_within_bounds_or_the_configured_one():
    assert warning_lead(None, None) is None and warning_lead(None, 30) is None  # no walltime: no warning
    assert warning_lead(3600, None) == 300  # a tenth is 360: at most five minutes
    assert warning_lead(600, None) == 60
    assert warning_lead(30, None) == 5  # a tenth is 3: at least five seconds
    assert warning_lead(6, None) == 3  # never more than half the walltime
    assert warning_lead(3600, 120) == 120 and warning_lead(100, 120) == 50
    assert warning_lead(3600, 0) is None  # 0: no warning


@pytest.mark.parametrize("failure", [FailureClass.TIMEOUT, FailureClass.WALLTIME_STOP, FailureClass.PREEMPTED])
def test_walltime_ends_and_preemption_do_not_spend_max_resubmissions(failure):
    policy = RetryPolicy(max_resubmissions=0)
    d = policy.decide(failure, 0, Resources(walltime=60), 0)
    assert d.kind is ActionKind.RESUBMIT and not d.counted
    # a walltime kill (no checkpoint) escalates the walltime; a stop at the warning made progress: same walltime
    assert d.resources.walltime == (120 if failure is FailureClass.TIMEOUT else 60)
    # a fault still spends it
    crash = policy.decide(FailureClass.WORKER_CRASH, 0, Resources(walltime=60), 0)
    assert crash.kind is ActionKind.GIVE_UP and crash.counted


def test_each_uncounted_end_has_its_own_bound():
    policy = RetryPolicy(max_resubmissions=5, max_walltime_escalations=2, max_continuations=3, max_preemptions=1)
    assert policy.decide(FailureClass.TIMEOUT, 0, Resources(), 1).kind is ActionKind.RESUBMIT
    over = policy.decide(FailureClass.TIMEOUT, 0, Resources(), 2)
    assert over.kind is ActionKind.GIVE_UP and "max_walltime_escalations=2" in over.why
    assert policy.decide(FailureClass.WALLTIME_STOP, 0, Resources(), 3).kind is ActionKind.GIVE_UP
    assert policy.decide(FailureClass.PREEMPTED, 0, Resources(), 1).kind is ActionKind.GIVE_UP
    with pytest.raises(ValueError):
        RetryPolicy(max_continuations=-1)


def test_checkpoint_outside_a_job_loads_the_default_and_keeps_nothing():
    checkpoint = poolparty.checkpoint  # an attribute of the package, as `poolparty.Pool` is

    checkpoint.save({"step": 3})
    assert checkpoint.load(default="fresh") == "fresh" and not checkpoint.warned()


# -- the warning per scheduler: scheduler flags only in the adapters -----------------------------------
def warned_request(lead):
    from poolparty.queues.arrays import ArrayPart
    from poolparty.queues.base import ArrayRequest

    return ArrayRequest(name="pp-r1", part=ArrayPart(0, (1, 2)), throttle=2, resources=Resources(walltime=600),
                        script=Path("/runs/r1/job.sh"), worker_argv=("/usr/bin/python3", "-m", "poolparty.node.worker"),
                        workdir=Path("/home/u"), log_dir=Path("/runs/r1/logs"), warning_lead=lead)


def test_each_adapter_renders_the_walltime_warning_and_none_without_a_lead():
    from poolparty.queues import lsf, pbs, sge, slurm

    assert "--signal=B:USR2@60" in slurm.sbatch_argv(warned_request(60))
    assert "h_rt=0:10:00,s_rt=0:09:00" in sge.qsub_argv(warned_request(60))  # SIGUSR1 at s_rt
    bsub = lsf.bsub_argv(warned_request(90))
    assert bsub[bsub.index("-wa"):bsub.index("-wa") + 4] == ["-wa", "USR2", "-wt", "2"]  # minutes, rounded up
    qsub = pbs.qsub_argv(warned_request(60), throttles=True)
    assert qsub[qsub.index("--warn-in"):qsub.index("--warn-in") + 2] == ["--warn-in", "540"]  # the worker's timer
    from poolparty.node.worker import parse_args

    assert parse_args(["/runs/r1/batches/0001", "--sub", "0", "--chunk", "3", "--warn-in", "540"]).warn_in == 540
    quiet = [slurm.sbatch_argv(warned_request(None)), sge.qsub_argv(warned_request(None)),
             lsf.bsub_argv(warned_request(None)), pbs.qsub_argv(warned_request(None), throttles=True)]
    assert not [a for argv in quiet for a in argv if "--signal" in a or "s_rt" in a or a in ("-wa", "--warn-in")]


def test_the_job_script_ignores_an_early_warning_until_the_worker_catches_it():
    from poolparty.store.job_script import JOB_SCRIPT

    assert "trap '' USR1 USR2" in JOB_SCRIPT.split("exec")[0]


# -- tasks -------------------------------------------------------------------------------------------
def job_id() -> str:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("POOLPARTY_JOB_ID") or "?"


def stepped(args):
    """``n`` steps of ``seconds`` each, one line per finished step in ``marker``, saved after each step."""
    from poolparty import checkpoint

    n, seconds, marker = args
    step = checkpoint.load(default=0)
    while step < n:
        time.sleep(seconds)
        with open(marker, "a") as f:
            f.write(f"{step} {job_id()}\n")
        step += 1
        checkpoint.save(step)  # after the warning: the task stops here, continued in the next job
    return n


def plain(args):
    """Sleeps without checkpoints: a walltime kill reruns it from its start (one line per start)."""
    seconds, marker = args
    with open(marker, "a") as f:
        f.write(f"start {job_id()}\n")
    time.sleep(seconds)
    return seconds


def task(args):
    kind, rest = args
    return stepped(rest) if kind == "stepped" else plain(rest)


#: per queue: walltime, lead, (steps, seconds per step) of the checkpointed task, seconds of the plain one.
#: SLURM enforces limits up to ~30 s late and may signal up to 60 s early: 95 s overruns 60 s for sure
#: and fits the escalated 120 s (as tests/test_real_wlm.py).
TIMING = {"local": (4, 2, (16, 0.5), 6.0), "slurm": (60, 30, (40, 2.0), 95.0)}


@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_tasks_longer_than_the_walltime_finish_with_no_resubmission(kind, make_queue_under_test, tmp_path, scenario):
    q = make_queue_under_test(kind)
    walltime, lead, (steps, step_seconds), plain_seconds = TIMING[kind]
    steps_file, starts_file = tmp_path / "steps.txt", tmp_path / "starts.txt"
    inputs = [("stepped", (steps, step_seconds, str(steps_file))), ("plain", (plain_seconds, str(starts_file)))]
    with poolparty.Pool(**q.pool_options(max_running=2, max_resubmissions=0, walltime=walltime,
                                         walltime_signal_lead=lead)) as pool:
        assert pool.map(task, inputs, chunksize=1) == [steps, plain_seconds]
    lines = [line.split() for line in steps_file.read_text().splitlines()]
    jobs = list(dict.fromkeys(job for _, job in lines))
    scenario.update(steps=steps, step_lines=len(lines), steps_per_job=[sum(1 for _, j in lines if j == job) for job in jobs],
                    plain_starts=len(starts_file.read_text().splitlines()))
    # each finished step ran once: the continuations resumed after it, none redid it
    assert [int(step) for step, _ in lines] == list(range(steps))
    assert len(jobs) >= 2, "the checkpointed task was continued in another job"
    # never in two jobs at once: each job's steps are one run of lines, a job never comes back
    assert [job for job, _ in itertools.groupby(j for _, j in lines)] == jobs
    # the task without checkpoints ran twice from its start: killed at the walltime, rerun with more
    assert len(starts_file.read_text().splitlines()) == 2


# -- preemption: a scheduler requeue -----------------------------------------------------------------
@pytest.mark.parametrize("kind", FAKE_KINDS)
def test_a_preempted_or_requeued_job_costs_no_resubmission(kind, make_queue_under_test, tmp_path):
    """Fake schedulers: a preemption (SGE/PBS rerun it themselves, SLURM/LSF end it PREEMPTED) and an
    explicit requeue (``scontrol requeue``, ``qmod -rj``, ``qrerun``, ``brequeue``)."""
    q = make_queue_under_test(kind, requeue_delay=3.0)  # pending that long after a requeue: every poll sees it
    markers = tmp_path / "markers"
    markers.mkdir()
    # (the fake SGE has no preemption of its own: a requeue stands for it)
    q.cluster.add_rule("requeue" if q.flavor == "sge" else "preempt", index=array_index(q, 0), after=1.5)
    q.cluster.add_rule("requeue", index=array_index(q, 1), after=1.5)
    with poolparty.Pool(**q.pool_options(max_running=3, max_resubmissions=0, claim_chunks=False)) as pool:
        assert pool.map(slow_square, [(x, str(markers), 3.0) for x in range(3)], chunksize=1) == [0, 1, 4]
    # both faults struck a running element (a marker count would depend on the start-up time under load)
    assert [r["armed"] for r in q.cluster.rules()] == [1, 1]
    assert set(runs_per_task(markers)) == {0, 1, 2}


def test_slurm_requeue_of_a_running_element_costs_no_resubmission(make_queue_under_test, tmp_path):
    q = make_queue_under_test("slurm")
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(**q.pool_options(max_running=2, max_resubmissions=0)) as pool:
        pending = pool.map_async(slow_square, [(x, str(markers), 15.0) for x in range(2)], chunksize=1)
        running = wait_until(lambda: q.running_elements(pool), 120, "a running element")
        time.sleep(2)
        subprocess.run([probe("scontrol"), "requeue", running[0]], check=True, timeout=60)
        assert pending.get(timeout=400) == [0, 1]
    assert max(runs_per_task(markers).values()) == 2  # the requeued element ran its task again


def test_a_checkpoint_of_a_stored_chunk_is_removed(tmp_path):
    steps_file = tmp_path / "steps.txt"
    with poolparty.Pool(1, queue="local", work_root=tmp_path / "runs", keep_work_dir=True) as pool:
        assert pool.map(stepped, [(3, 0.0, str(steps_file))]) == [3]
        work_dir = pool.engine.work_dir
    assert not [p for p in Path(work_dir).rglob("*.ckpt")]
