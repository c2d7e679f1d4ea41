"""The submitter's decisions on literal input: array layout, the request's throttle and argv, the
running slots, and slots of finished arrays given to older ones (rebalance)."""
from pathlib import Path

from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.dispatch.settings import DispatchSettings
from poolparty.dispatch.submitter import (Submitter, ThrottleRaise, array_request, free_slots, layout,
                                          throttle_raises)
from poolparty.engine.batch_state import Submission
from poolparty.queues.arrays import ArrayPart
from poolparty.resources import Resources
from poolparty.retry import RetryPolicy

BATCH = Path("/runs/r1/batches/1")


def settings(**kw) -> DispatchSettings:
    base = dict(name="pp-abc", max_running=4, array=True, retry=RetryPolicy(), polling_interval=30.0,
                tick=0.25, python="/usr/bin/python3", script=Path("/runs/r1/job.sh"))
    base.update(kw)
    return DispatchSettings(**base)


def request(part: ArrayPart, free: int, resources: Resources = Resources(), **kw):
    return array_request(part, free, sub=7, resources=resources, settings=settings(**kw), batch_dir=BATCH,
                         log_dir=BATCH / "incoming")


# -- layout -------------------------------------------------------------------------------------
def test_plain_jobs_are_one_part_indexed_by_chunk_whatever_the_array_limits():
    assert layout([9, 3, 5], array=False) == [ArrayPart(0, (3, 5, 9))]


def test_an_array_is_split_by_the_schedulers_index_window():
    assert layout([3, 150, 151, 260], array=True, first_index=0, max_index=99) == [
        ArrayPart(0, (3,)), ArrayPart(100, (50, 51)), ArrayPart(200, (60,))]


def test_sge_arrays_are_one_based_contiguous_ranges():
    assert layout([0, 1, 2, 5, 6, 9], array=True, first_index=1, max_index=75000, contiguous=True) == [
        ArrayPart(-1, (1, 2, 3)), ArrayPart(-1, (6, 7)), ArrayPart(-1, (10,))]


def test_sge_windows_keep_indices_within_one_to_max_index():
    parts = layout(range(6), array=True, first_index=1, max_index=4, contiguous=True)
    assert parts == [ArrayPart(-1, (1, 2, 3, 4)), ArrayPart(3, (1, 2))]
    assert [p.chunks for p in parts] == [[0, 1, 2, 3], [4, 5]]


# -- the request ----------------------------------------------------------------------------------
def test_an_array_with_fewer_slots_than_chunks_is_throttled_and_lets_elements_claim():
    r = request(ArrayPart(0, (0, 1, 2, 3, 4)), free=2, resources=Resources(walltime=600))
    assert r.part == ArrayPart(0, (0, 1, 2, 3, 4))
    assert r.throttle == 2
    assert r.worker_argv == ("/usr/bin/python3", "-m", "poolparty.node.worker", str(BATCH), "--sub", "7",
                             "--claim", "0-4", "--walltime", "600")
    assert (r.name, r.script, r.workdir, r.log_dir) == ("pp-abc", Path("/runs/r1/job.sh"), BATCH, BATCH / "incoming")


def test_no_claims_when_every_chunk_has_a_slot_or_claims_are_off():
    assert request(ArrayPart(0, (0, 1)), free=4).worker_argv[-2:] == ("--sub", "7")
    off = request(ArrayPart(0, (0, 1, 2)), free=1, claim_chunks=False)
    assert off.throttle == 1 and "--claim" not in off.worker_argv


def test_claims_without_a_walltime_pass_no_walltime():
    r = request(ArrayPart(-1, (1, 2, 3)), free=1)
    assert r.worker_argv[-2:] == ("--claim", "1-3")


def test_plain_jobs_beyond_the_free_slots_wait_for_the_next_round():
    r = request(ArrayPart(0, (3, 5, 9)), free=2, array=False)
    assert r.part == ArrayPart(0, (3, 5)) and r.throttle == 2
    assert "--claim" not in r.worker_argv  # a plain job runs only its own chunk


# -- running slots and rebalance --------------------------------------------------------------------
def test_a_submission_reserves_its_throttle_at_most_its_unfinished_chunks():
    subs = [Submission(0, "10", throttle=3, unfinished={0, 1}), Submission(1, "11", throttle=1, unfinished={5, 6})]
    assert free_slots(10, subs) == 7


def test_free_slots_go_to_the_oldest_arrays_first():
    subs = [Submission(0, "10", throttle=2, unfinished=set(range(10))),
            Submission(1, "11", throttle=1, unfinished={20, 21})]
    assert throttle_raises(subs, free=3, max_running=4) == [ThrottleRaise("10", 4), ThrottleRaise("11", 2)]
    assert throttle_raises(subs, free=1, max_running=4) == [ThrottleRaise("10", 3)]
    assert throttle_raises(subs, free=0, max_running=4) == []


def test_no_raise_beyond_what_an_array_can_use_nor_for_an_array_without_job_id():
    subs = [Submission(0, "?1:0", throttle=1, unfinished=set(range(5))),  # adopted, job id unknown
            Submission(1, "12", throttle=2, unfinished={1, 2}),  # already runs all it has
            Submission(2, "13", throttle=1, unfinished={7, 8, 9})]
    assert throttle_raises(subs, free=10, max_running=4) == [ThrottleRaise("13", 3)]


class ThrottleRecorder:
    """A queue that refuses to change the limit of job "10" and records the others."""

    min_poll_interval = 1.0
    shares_status = False  # a QueueAdapter capability: this queue is never asked for status

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.calls.append((job_id, throttle))
        return job_id != "10"


def test_rebalance_drops_finished_submissions_and_passes_a_refused_raise_on():
    queue = ThrottleRecorder()
    jobs = PoolJobs(queue, "pp-abc")  # type: ignore[arg-type]
    for s in (Submission(0, "9", throttle=2, unfinished=set()),  # finished: its slots are free again
              Submission(1, "10", throttle=1, unfinished=set(range(5))),
              Submission(2, "11", throttle=1, unfinished=set(range(5)))):
        jobs.add(s)
    Submitter(jobs, settings(max_running=4)).rebalance()
    assert list(jobs.submissions) == ["10", "11"]
    assert queue.calls == [("10", 3), ("11", 3)]  # "10" refused: the same two slots go to "11"
    assert [s.throttle for s in jobs.submissions.values()] == [1, 3]
