"""The watcher's verdict on literal input: grace timers, the scheduler's view of a job, the clock."""
from poolparty.dispatch.watcher import Action, ChunkWatch, GraceSettings, Verdict, judge
from poolparty.queues.states import JobState, JobStatus
from poolparty.retry import FailureClass

GRACE = GraceSettings(vanish_grace=30.0, result_grace=10.0, killed_result_grace=2.0, max_restarts=3)


def test_a_job_missing_from_the_queue_waits_vanish_grace_then_fails_as_vanished():
    first = judge(ChunkWatch(), None, 100.0, GRACE)
    assert first == Verdict(Action.WAIT, ChunkWatch(missing_since=100.0))
    assert judge(first.watch, None, 129.9, GRACE).action is Action.WAIT
    lost = judge(first.watch, None, 130.0, GRACE)
    assert lost == Verdict(Action.FAILED, ChunkWatch(missing_since=100.0), failure=FailureClass.VANISHED,
                           detail="vanished from the queue")


def test_a_job_that_left_the_queue_after_it_ended_is_classified_by_its_last_state():
    watch = ChunkWatch(ended_since=90.0, ended_state=JobState.OUT_OF_MEMORY)
    waiting = judge(watch, None, 100.0, GRACE)
    assert waiting.action is Action.WAIT and waiting.watch.missing_since == 100.0
    lost = judge(waiting.watch, None, 131.0, GRACE)
    assert (lost.action, lost.failure, lost.detail, lost.cancel) == (
        Action.FAILED, FailureClass.OUT_OF_MEMORY, "out_of_memory", False)


def test_completed_without_a_result_waits_result_grace():
    first = judge(ChunkWatch(), JobStatus(JobState.COMPLETED, ""), 100.0, GRACE)
    assert first == Verdict(Action.WAIT, ChunkWatch(ended_since=100.0, ended_state=JobState.COMPLETED))
    assert judge(first.watch, JobStatus(JobState.COMPLETED), 109.9, GRACE).action is Action.WAIT
    lost = judge(first.watch, JobStatus(JobState.COMPLETED, ""), 110.0, GRACE)
    # no reason (the SLURM adapter turns squeue's "None" into ""): none in the message
    assert (lost.action, lost.failure, lost.detail) == (Action.FAILED, FailureClass.WORKER_CRASH, "completed")
    said = judge(first.watch, JobStatus(JobState.COMPLETED, "NonZeroExitCode"), 110.0, GRACE)
    assert said.detail == "completed (NonZeroExitCode)"


def test_a_killed_job_waits_only_killed_result_grace():
    first = judge(ChunkWatch(), JobStatus(JobState.TIMEOUT, "TimeLimit"), 100.0, GRACE)
    assert judge(first.watch, JobStatus(JobState.TIMEOUT, "TimeLimit"), 101.9, GRACE).action is Action.WAIT
    lost = judge(first.watch, JobStatus(JobState.TIMEOUT, "TimeLimit"), 102.0, GRACE)
    assert (lost.action, lost.failure, lost.detail, lost.cancel) == (
        Action.FAILED, FailureClass.TIMEOUT, "timeout (TimeLimit)", False)


def test_killed_result_grace_never_exceeds_result_grace():
    grace = GraceSettings(vanish_grace=30.0, result_grace=1.0, killed_result_grace=5.0, max_restarts=3)
    assert grace.result_grace_after(JobState.CANCELLED) == 1.0
    assert grace.result_grace_after(JobState.FAILED) == 1.0
    first = judge(ChunkWatch(), JobStatus(JobState.CANCELLED), 0.0, grace)
    assert judge(first.watch, JobStatus(JobState.CANCELLED), 1.0, grace).failure is FailureClass.CANCELLED


def test_an_error_state_fails_at_once_and_asks_for_the_job_to_be_removed():
    v = judge(ChunkWatch(), JobStatus(JobState.ERROR, "Eqw"), 100.0, GRACE)
    assert v == Verdict(Action.FAILED, ChunkWatch(ended_state=JobState.ERROR), cancel=True,
                        failure=FailureClass.SCHEDULER_ERROR, detail="error (Eqw)")


def test_a_hold_is_reported_once():
    first = judge(ChunkWatch(), JobStatus(JobState.HELD, "JobHeldUser"), 0.0, GRACE)
    assert first == Verdict(Action.HELD, ChunkWatch(held_reported=True))
    again = judge(first.watch, JobStatus(JobState.HELD, "JobHeldUser"), 60.0, GRACE)
    assert again == Verdict(Action.WAIT, ChunkWatch(held_reported=True))


def test_pending_before_it_ever_ran_is_no_requeue():
    v = judge(ChunkWatch(), JobStatus(JobState.PENDING), 0.0, GRACE)
    assert v == Verdict(Action.WAIT, ChunkWatch())


def test_a_scheduler_requeue_after_running_is_counted():
    running = judge(ChunkWatch(), JobStatus(JobState.RUNNING), 0.0, GRACE)
    assert running == Verdict(Action.RUNNING, ChunkWatch(seen_running=True))
    requeued = judge(running.watch, JobStatus(JobState.REQUEUED, "NodeFail"), 1.0, GRACE)
    assert requeued == Verdict(Action.WAIT, ChunkWatch(scheduler_restarts=1))
    # pending again without having run since: the same requeue, not another one
    assert judge(requeued.watch, JobStatus(JobState.PENDING), 2.0, GRACE).watch.scheduler_restarts == 1


def test_scheduler_requeues_have_their_own_bound_not_max_resubmissions():
    watch = ChunkWatch(seen_running=True, scheduler_restarts=2)
    within = judge(watch, JobStatus(JobState.PENDING, "NodeFail"), 0.0, GRACE)
    assert within.action is Action.WAIT and within.watch.scheduler_restarts == 3  # 3 restarts: allowed
    ran_again = judge(within.watch, JobStatus(JobState.RUNNING), 1.0, GRACE).watch
    over = judge(ran_again, JobStatus(JobState.PENDING, "NodeFail"), 2.0, GRACE)
    assert over == Verdict(Action.GIVE_UP, ChunkWatch(scheduler_restarts=4), cancel=True,
                           detail="requeued by the scheduler 4 time(s) (NodeFail); max_preemptions=3")


def test_back_in_the_queue_stops_the_grace_timers_but_keeps_the_last_ended_state():
    watch = ChunkWatch(missing_since=5.0, ended_since=6.0, ended_state=JobState.COMPLETED, held_reported=True)
    v = judge(watch, JobStatus(JobState.RUNNING), 7.0, GRACE)
    assert v == Verdict(Action.RUNNING, ChunkWatch(ended_state=JobState.COMPLETED, held_reported=True,
                                                   seen_running=True))


def test_a_new_job_starts_unwatched_but_keeps_the_restart_count():
    watch = ChunkWatch(missing_since=1.0, ended_since=2.0, ended_state=JobState.FAILED, seen_running=True,
                       held_reported=True, scheduler_restarts=2)
    assert watch.next_job() == ChunkWatch(scheduler_restarts=2)
    assert watch.regrace() == ChunkWatch(seen_running=True, held_reported=True, scheduler_restarts=2)
