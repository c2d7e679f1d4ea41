"""A chunk's named transitions: its phase, its submission's running slot and its watch record."""
from poolparty.dispatch.watcher import ChunkWatch
from poolparty.engine.batch_state import ChunkRun, Submission
from poolparty.phases import ChunkPhase
from poolparty.queues.states import JobState
from poolparty.resources import Resources


def queued(chunk: int = 3) -> tuple[ChunkRun, Submission]:
    s = Submission(1, "100", throttle=2)
    c = ChunkRun(chunk, [6, 7], Resources())
    c.submitted(1, "100_3", s)
    return c, s


def test_submitted_takes_a_slot_in_its_submission():
    c, s = queued()
    assert (c.phase, c.sub, c.element, c.submission) == (ChunkPhase.QUEUED, 1, "100_3", s)
    assert s.unfinished == {3} and s.reserved == 1


def test_mark_done_leaves_the_submission_and_returns_it():
    c, s = queued()
    assert c.mark_done() is s
    assert c.phase is ChunkPhase.DONE and c.submission is None and s.unfinished == set()
    assert c.detach() is None  # once detached, nothing more to leave


def test_a_lost_job_is_retried_with_escalated_resources_and_a_fresh_watch():
    c, s = queued()
    c.claimed_by("100_0")
    c.watch = ChunkWatch(ended_since=1.0, ended_state=JobState.OUT_OF_MEMORY, seen_running=True,
                         scheduler_restarts=1)
    c.job_lost("job 100_0: out_of_memory")
    c.retry_with(Resources(memory=4 << 30))
    assert (c.phase, c.resubmissions, c.resources) == (ChunkPhase.WAITING, 1, Resources(memory=4 << 30))
    assert c.last_failure == "job 100_0: out_of_memory" and c.runner is None
    assert c.watch == ChunkWatch(scheduler_restarts=1)
    assert c.submission is None and s.unfinished == set() and s.claimed


def test_give_up_fails_the_chunk_and_frees_its_slot():
    c, s = queued()
    c.give_up("cancelled")
    assert (c.phase, c.last_failure, c.submission, s.unfinished) == (ChunkPhase.FAILED, "cancelled", None, set())


def test_watching_the_claiming_element_restarts_the_grace_timers():
    c, _ = queued()
    c.watch = ChunkWatch(missing_since=5.0, ended_state=JobState.COMPLETED, seen_running=True)
    assert c.watched == "100_3"
    c.watch_runner("100_0")
    assert c.watched == "100_0" and c.watch == ChunkWatch(seen_running=True)


def test_restore_keeps_the_current_resources_when_the_journal_has_none():
    c = ChunkRun(0, [0], Resources(cpus=2))
    c.restore(None, 2)
    assert (c.resources, c.resubmissions, c.phase) == (Resources(cpus=2), 2, ChunkPhase.WAITING)
