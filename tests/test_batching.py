"""The one batching window (poolparty.api.batching) on a recording engine: grouping by resources,
chunk layout, fixed and quiet windows, holds, and how each task's outcome reaches its item once."""
from __future__ import annotations

import threading
import time

import cloudpickle
import pytest

from poolparty import Call, Resources, RetryLimitExceeded
from poolparty.api.batching import BatchingWindow, Placement, layout_chunks
from poolparty.engine.handle import BatchHandle

SMALL, BIG = Resources(cpus=1), Resources(cpus=8)


class RecordingEngine:
    """Stands in for Engine.submit: records each batch and returns a handle the test drives."""

    max_running = 4

    def __init__(self, refuse: BaseException | None = None):
        self.refuse = refuse
        self.batches: list[dict] = []
        self.handles: list[BatchHandle] = []

    def submit(self, shared, chunks, resources, *, kind, give_up_policy):
        if self.refuse is not None:
            raise self.refuse
        self.batches.append({"chunks": [[i for i, _ in c] for c in chunks], "resources": resources, "kind": kind,
                             "policy": give_up_policy, "payloads": [p for c in chunks for _, p in c]})
        handle = BatchHandle(sum(len(c) for c in chunks), f"batch {len(self.batches)}")
        handle.batch_dir = f"/runs/batches/{len(self.batches)}"
        self.handles.append(handle)
        return handle


class RecordingSink:
    def __init__(self):
        self.events: list[tuple] = []
        self.lock = threading.Lock()

    def _note(self, *event):
        with self.lock:
            self.events.append(event)

    def submitted(self, placed):
        self._note("submitted", [(item, where.task, where.chunk) for item, where in placed])

    def arrived(self, item, where: Placement):
        self._note("arrived", item, where.handle.outcome(where.task))

    def failed(self, item, where, error):
        self._note("failed", item, error)

    def refused(self, item, error):
        self._note("refused", item, error)

    def of(self, kind):
        return [e[1:] for e in self.events if e[0] == kind]


def call(x):
    return Call(abs, (x,))


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_layout_packs_tasks_per_job_or_spreads_over_the_running_limit():
    assert layout_chunks(3, 1, 100) == [range(0, 1), range(1, 2), range(2, 3)]
    assert layout_chunks(5, 2, 100) == [range(0, 2), range(2, 4), range(4, 5)]
    assert layout_chunks(10, None, 4) == [range(0, 3), range(3, 6), range(6, 9), range(9, 10)]
    assert layout_chunks(3, None, 50) == [range(0, 1), range(1, 2), range(2, 3)]
    assert layout_chunks(0, None, 4) == []


def test_items_within_the_window_leave_as_one_batch_per_resources():
    engine, sink = RecordingEngine(), RecordingSink()
    window = BatchingWindow(engine, sink, window=0.2, kind="calls", give_up_policy="fail_batch")
    for name, res in (("a", SMALL), ("b", BIG), ("c", SMALL), ("d", SMALL), ("e", BIG)):
        window.add(name, call(1), res)
    assert engine.batches == []  # the window is still open
    wait_for(lambda: len(engine.batches) == 2)
    small, big = engine.batches
    assert (small["resources"], small["chunks"], small["kind"], small["policy"]) == (SMALL, [[0], [1], [2]], "calls",
                                                                                   "fail_batch")
    assert (big["resources"], big["chunks"]) == (BIG, [[0], [1]])
    assert sink.of("submitted") == [([("a", 0, 0), ("c", 1, 1), ("d", 2, 2)],), ([("b", 0, 0), ("e", 1, 1)],)]


def test_packed_chunks_place_each_item_in_its_job():
    engine, sink = RecordingEngine(), RecordingSink()
    window = BatchingWindow(engine, sink, window=None, kind="prefect", tasks_per_job=None)
    for i in range(10):
        window.add(i, call(i), SMALL)
    window.flush()
    assert engine.batches[0]["chunks"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    placed = sink.of("submitted")[0][0]
    assert [chunk for _, _, chunk in placed] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


@pytest.mark.parametrize("quiet", [False, True])
def test_a_fixed_window_closes_on_time_a_quiet_one_waits_for_a_pause(quiet):
    engine = RecordingEngine()
    window = BatchingWindow(engine, RecordingSink(), window=0.4, kind="calls", quiet=quiet)
    for i in range(11):  # one item every 0.1 s for 1 s: far longer than the window, never a pause as long
        window.add(i, call(i), SMALL)
        time.sleep(0.1)
    wait_for(lambda: sum(len(b["chunks"]) for b in engine.batches) == 11)
    if quiet:
        assert len(engine.batches) == 1
    else:
        assert len(engine.batches) >= 2


def test_a_quiet_window_leaves_at_the_latest_max_hold_after_the_burst_began():
    engine = RecordingEngine()
    window = BatchingWindow(engine, RecordingSink(), window=0.2, kind="calls", quiet=True, max_hold=0.5)
    for i in range(16):  # one item every 0.1 s for 1.6 s: never a pause of 0.2 s
        window.add(i, call(i), SMALL)
        time.sleep(0.1)
    wait_for(lambda: sum(len(b["payloads"]) for b in engine.batches) == 16)
    assert len(engine.batches) >= 2  # about every 0.5 s, not one batch after the stream ends


def test_a_burst_is_packed_a_few_chunks_per_running_slot():
    assert layout_chunks(2000, None, 2, chunks_per_slot=16) == [range(i, min(i + 63, 2000))
                                                               for i in range(0, 2000, 63)]
    assert layout_chunks(20, None, 2, chunks_per_slot=16) == [range(i, i + 1) for i in range(20)]
    engine = RecordingEngine()  # max_running = 4
    window = BatchingWindow(engine, RecordingSink(), window=None, kind="calls", tasks_per_job=None,
                            chunks_per_slot=2)
    for i in range(24):
        window.add(i, call(i), SMALL)
    window.flush()
    assert [len(c) for c in engine.batches[0]["chunks"]] == [3] * 8  # 2 chunks per slot, 4 slots


def test_a_hold_keeps_the_burst_open_and_its_release_submits_at_once():
    engine = RecordingEngine()
    window = BatchingWindow(engine, RecordingSink(), window=0.05, kind="prefect", quiet=True)
    window.hold()
    window.add(1, call(1), SMALL)
    time.sleep(0.3)
    window.add(2, call(2), SMALL)
    time.sleep(0.3)
    assert engine.batches == []  # far past the window: held
    window.release()
    assert [b["chunks"] for b in engine.batches] == [[[0], [1]]]  # in release(), not later


def test_without_a_window_only_flush_submits():
    engine = RecordingEngine()
    window = BatchingWindow(engine, RecordingSink(), window=None, kind="snakemake")
    window.add("job", call(1), SMALL)
    time.sleep(0.2)
    assert engine.batches == []
    window.flush()
    assert len(engine.batches) == 1
    window.flush()  # nothing pending: no empty batch
    assert len(engine.batches) == 1


def test_each_outcome_reaches_its_item_once_and_the_rest_fail_when_the_batch_ends():
    engine, sink = RecordingEngine(), RecordingSink()
    window = BatchingWindow(engine, sink, window=None, kind="calls", noun="task run")
    for name in "abc":
        window.add(name, call(1), SMALL)
    window.flush()
    handle = engine.handles[0]
    handle.deliver([(1, True, cloudpickle.dumps("B"))])
    handle.deliver([(1, True, cloudpickle.dumps("B"))])  # the same result seen twice
    handle.finish(None)
    assert sink.of("arrived") == [("b", (True, "B"))]
    failed = sink.of("failed")
    assert [item for item, _ in failed] == ["a", "c"]
    assert all(str(e) == "batch 1 ended without this task run's result" for _, e in failed)


def test_a_refused_batch_is_reported_for_each_of_its_items():
    boom = ValueError("no such partition")
    sink = RecordingSink()
    window = BatchingWindow(RecordingEngine(refuse=boom), sink, window=None, kind="calls")
    window.add("a", call(1), SMALL)
    window.add("b", call(2), SMALL)
    window.flush()
    assert sink.of("refused") == [("a", boom), ("b", boom)]
    assert sink.of("submitted") == []


def test_a_ctrl_c_during_submission_reaches_every_item_and_then_the_caller():
    """Snakemake flushes a round in its own thread: a KeyboardInterrupt must stop Snakemake, not be
    swallowed as a refusal of its jobs."""
    stop = KeyboardInterrupt()
    sink = RecordingSink()
    window = BatchingWindow(RecordingEngine(refuse=stop), sink, window=None, kind="calls")
    window.add("a", call(1), SMALL)
    with pytest.raises(KeyboardInterrupt):
        window.flush()
    assert sink.of("refused") == [("a", stop)]


@pytest.mark.parametrize("fail_given_up", [True, False])
def test_a_given_up_chunk_fails_its_items_at_once_only_when_asked(fail_given_up):
    engine, sink = RecordingEngine(), RecordingSink()
    window = BatchingWindow(engine, sink, window=None, kind="prefect", fail_given_up=fail_given_up)
    for name in "ab":
        window.add(name, call(1), SMALL)
    window.flush()
    handle = engine.handles[0]
    handle.chunk_given_up(0, [0], "NODE_FAIL")
    if fail_given_up:
        [(item, error)] = sink.of("failed")
        assert item == "a" and isinstance(error, RetryLimitExceeded)
        assert error.failures == {0: "NODE_FAIL"} and error.tasks == {0: [0]}
    else:
        assert sink.of("failed") == []
    end = RuntimeError("batch aborted")
    handle.finish(end)
    assert [item for item, _ in sink.of("failed")] == ["a", "b"]
    assert sink.of("failed")[-1][1] is end


def test_a_flush_ends_the_open_window_at_once_without_a_second_batch():
    engine = RecordingEngine()
    window = BatchingWindow(engine, RecordingSink(), window=30.0, kind="calls")
    window.add("a", call(1), SMALL)
    waiter = window._waiter
    assert waiter is not None and waiter.is_alive()
    time.sleep(0.2)  # the window's thread is asleep until its deadline
    window.flush()  # close(): the window's thread must not sleep on for 30 s
    waiter.join(timeout=2)
    assert not waiter.is_alive()
    assert len(engine.batches) == 1
