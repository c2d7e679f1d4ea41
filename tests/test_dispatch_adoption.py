"""Resume on literal input: the adoption plan from a replayed journal and a batch's chunks."""
from poolparty.dispatch.adoption import AdoptedSubmission, AdoptionPlan, ChunkRestore, plan_adoption
from poolparty.engine.batch_state import ChunkRun
from poolparty.resources import Resources
from poolparty.store.journal import ChunkHistory, JournalState

SMALL = Resources(memory=1 << 30)
BIG = Resources(memory=4 << 30)


def chunks(n: int, done: set[int] = frozenset()) -> list[ChunkRun]:
    runs = [ChunkRun(i, [i], SMALL) for i in range(n)]
    for c in runs:
        if c.chunk in done:
            c.mark_done()
    return runs


def test_queued_chunks_are_adopted_with_their_element_and_submission():
    state = JournalState(chunks={
        0: ChunkHistory(sub=0, element="100_0", job_id="100", resources=SMALL),
        1: ChunkHistory(sub=1, element="101_0", job_id="101", resubmissions=1, resources=BIG),
        2: ChunkHistory(sub=0, element="100_2", job_id="100", resources=SMALL),
    }, next_sub=2)
    assert plan_adoption(state, chunks(4), batch=3) == AdoptionPlan(
        next_sub=2, unrecorded_stored=[], done_jobs={},
        restored=[ChunkRestore(0, SMALL, 0), ChunkRestore(1, BIG, 1), ChunkRestore(2, SMALL, 0)],
        submissions=[AdoptedSubmission(0, "100", {0: "100_0", 2: "100_2"}),
                     AdoptedSubmission(1, "101", {1: "101_0"})])


def test_given_up_chunks_start_afresh_with_their_last_resources():
    state = JournalState(chunks={
        0: ChunkHistory(sub=2, element="102_0", job_id="102", resubmissions=2, resources=BIG, gave_up="oom"),
    }, next_sub=3)
    plan = plan_adoption(state, chunks(1), batch=1)
    assert plan.restored == [ChunkRestore(0, BIG, 0)]
    assert plan.submissions == [] and plan.adopted == 0


def test_stored_chunks_keep_their_jobs_name_and_unrecorded_ones_are_reported():
    state = JournalState(chunks={
        0: ChunkHistory(sub=0, element="100_0", job_id="100"),
        1: ChunkHistory(sub=0, element="100_1", job_id="100"),
    }, next_sub=1, stored={0})
    plan = plan_adoption(state, chunks(3, done={0, 1, 2}), batch=1)
    assert plan.unrecorded_stored == [1, 2]  # stored, but the journal does not say so
    assert plan.done_jobs == {0: (0, "100_0"), 1: (0, "100_1")}
    assert plan.restored == [] and plan.submissions == []


def test_a_submission_without_a_recorded_job_id_gets_a_placeholder():
    state = JournalState(chunks={4: ChunkHistory(sub=5, element="e4")}, next_sub=6)
    plan = plan_adoption(state, chunks(5), batch=7)
    assert plan.submissions == [AdoptedSubmission(5, "?7:5", {4: "e4"})]
    assert plan.restored == [ChunkRestore(4, None, 0)]


def test_a_chunk_the_journal_never_saw_is_left_waiting():
    assert plan_adoption(JournalState(), chunks(2), batch=1) == AdoptionPlan(0, [], {})
