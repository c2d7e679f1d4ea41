"""Streaming maps: ``Pool.imap``/``imap_unordered`` and ``Executor.map`` read their inputs lazily, a window
at a time, side by side with multiprocessing and concurrent.futures (local queue and the fake schedulers)."""
from __future__ import annotations

import concurrent.futures as cf
import gc
import itertools
import math
import multiprocessing
import time
import weakref

import pytest

import poolparty
from conftest import FAKE_KINDS, SUBMIT_COMMAND, local_worker_pids, poll_until
try:
    from poolparty.api import streaming  # the module under test; its names are read where used
except ImportError:  # a checkout from before streaming maps: each test fails on its own
    streaming = None  # type: ignore[assignment]


def square(x):
    return x * x


def sleep_then(delay, value):
    time.sleep(delay)
    return value


class Box:
    """A result that can be watched with a weak reference."""

    def __init__(self, value):
        self.value = value


def boxed(x):
    return Box(x)


class ReadTooFar(Exception):
    pass


class CountingInput:
    """An iterator that counts what was read from it and refuses to be read past ``limit`` (so a map
    that reads its whole input fails at once instead of running forever)."""

    def __init__(self, limit: int = 5_000, fail_at: int | None = None):
        self.read = 0
        self.limit = limit
        self.fail_at = fail_at

    def __iter__(self):
        return self

    def __next__(self):
        if self.read == self.fail_at:
            raise ValueError(f"bad input at {self.read}")
        if self.read >= self.limit:
            raise ReadTooFar(f"read {self.read} inputs: the map reads its input eagerly")
        self.read += 1
        return self.read - 1


def failing_at_two():
    yield 1
    yield 2
    raise ValueError("boom at 2")


def drain(it) -> list:
    """Everything an imap iterator gives, its error and what comes after it, as multiprocessing's does."""
    out: list = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out + ["stop"]
        except ValueError as e:
            out.append(f"ValueError: {e}")


# -- the pure rules -------------------------------------------------------------------------------
def test_sequences_are_sized_and_iterators_are_not():
    is_sized = streaming.is_sized
    assert is_sized([1]) and is_sized((1,)) and is_sized(range(3)) and is_sized("ab")
    assert not is_sized(iter([1])) and not is_sized(x for x in [1]) and not is_sized({1: 2}) and not is_sized({1})


def test_windows_and_default_chunks():
    from poolparty.api.streaming import (CHUNKS_PER_SLOT, MIN_WINDOW_CHUNKS, cut_chunks, default_chunksize,
                                         window_size)

    assert window_size(1, 2) == MIN_WINDOW_CHUNKS
    assert window_size(3, 100) == 3 * 400
    assert default_chunksize(None, 8) == 1  # an iterator: multiprocessing's rule
    assert default_chunksize(10, 2) == 1  # few inputs: one task per chunk, results one by one
    assert default_chunksize(2000, 2) == math.ceil(2000 / (2 * CHUNKS_PER_SLOT))
    assert cut_chunks(["a", "b", "c"], 2) == [[(0, "a"), (1, "b")], [(2, "c")]]


# -- Pool.imap / imap_unordered ----------------------------------------------------------------------
def test_an_infinite_generator_is_consumed_with_islice(pool):
    got = list(itertools.islice(pool.imap(square, CountingInput()), 5))
    assert got == [0, 1, 4, 9, 16]
    got = sorted(itertools.islice(pool.imap_unordered(square, CountingInput()), 5))
    assert len(got) == 5 and all(math.isqrt(v) ** 2 == v for v in got)
    pool.terminate()  # and the feeders stop


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_an_input_error_is_raised_at_its_position_like_multiprocessing(pool, method):
    with multiprocessing.get_context("spawn").Pool(2) as mp_pool:  # spawn: no fork of a process with threads
        expected = drain(getattr(mp_pool, method)(square, failing_at_two()))
    it = getattr(pool, method)(square, failing_at_two())  # no error at the call
    got = drain(it)
    assert sorted(map(str, got)) == sorted(map(str, expected)) == ["1", "4", "ValueError: boom at 2", "stop"]
    assert got[-1] == expected[-1] == "stop"  # the error ends the iteration
    if method == "imap":
        assert got == expected == [1, 4, "ValueError: boom at 2", "stop"]  # the error in its place


def test_only_a_bounded_number_of_inputs_is_read_ahead_of_the_consumer(pool):
    source = CountingInput(limit=5_000)
    it = pool.imap(square, source, chunksize=1)
    assert next(it) == 0
    time.sleep(1.5)  # the feeder has all the time it wants: it must still wait for the consumer
    window = streaming.window_size(1, len(pool))
    assert source.read <= (streaming.BUFFERED_WINDOWS + 1) * window, source.read
    assert [next(it) for _ in range(3 * window)] == [x * x for x in range(1, 3 * window + 1)]
    assert source.read <= 3 * window + (streaming.BUFFERED_WINDOWS + 1) * window


def test_a_closed_pool_still_runs_what_was_mapped_from_a_generator(tmp_path):
    pool = poolparty.Pool(2, queue="local", work_root=tmp_path)
    it = pool.imap(square, iter(range(300)), chunksize=2)
    pool.close()
    pool.join()
    assert list(it) == [x * x for x in range(300)]


@pytest.mark.parametrize("kind", ["local", *FAKE_KINDS])
def test_a_streamed_map_makes_one_submission_per_window(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    n, chunksize = 300, 2
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        assert list(pool.imap(square, iter(range(n)), chunksize=chunksize)) == [x * x for x in range(n)]
        windows = math.ceil(n / streaming.window_size(chunksize, 2))
        assert pool.engine._batch_count == windows  # O(n / window) batches, never O(n)
        assert list(pool.imap_unordered(square, range(n), chunksize=chunksize)) != []
        assert pool.engine._batch_count == windows + 1  # a sequence is one batch (one array)
        assert drain(pool.imap(square, failing_at_two())) == [1, 4, "ValueError: boom at 2", "stop"]
        assert list(itertools.islice(pool.imap(square, CountingInput()), 3)) == [0, 1, 4]


# -- Executor.map -------------------------------------------------------------------------------------
def test_executor_map_does_not_keep_the_results_it_yielded(ex):
    it = ex.map(boxed, range(3))
    first = next(it)
    assert first.value == 0
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None  # concurrent.futures pops its futures: a yielded value is the caller's alone
    assert [b.value for b in it] == [1, 2]


def test_executor_map_reads_an_iterator_lazily(ex):
    source = CountingInput()
    assert list(itertools.islice(ex.map(square, source), 4)) == [0, 1, 4, 9]
    assert source.read < 5_000


def test_executor_map_timeout_counts_from_the_call_like_the_standard_library(ex):
    ref = cf.ThreadPoolExecutor(2)
    try:
        for e in (ref, ex):
            it = e.map(sleep_then, [0.0, 5.0], ["a", "b"], timeout=2.5)
            time.sleep(3.0)  # the deadline passed while nobody iterated
            assert next(it) == "a"  # done: handed out however late
            t0 = time.monotonic()
            with pytest.raises(cf.TimeoutError):
                next(it)
            assert time.monotonic() - t0 < 1.0  # no new timeout from the first next()
    finally:
        ref.shutdown(wait=False, cancel_futures=True)


def test_closing_the_map_iterator_cancels_what_is_left(ex):
    it = ex.map(sleep_then, itertools.chain([0.0], itertools.repeat(30.0)), CountingInput(), chunksize=1)
    assert next(it) == 0
    assert poll_until(lambda: len(local_worker_pids(ex.work_dir)) >= 1, 10, 0.05)
    it.close()  # as the standard library's generator: the rest is cancelled
    assert poll_until(lambda: local_worker_pids(ex.work_dir) == [], 10, 0.05)


def test_a_timed_out_map_cancels_what_is_left(ex):
    it = ex.map(sleep_then, itertools.repeat(30.0), CountingInput(), timeout=1.0)
    with pytest.raises(cf.TimeoutError):
        next(it)
    assert poll_until(lambda: local_worker_pids(ex.work_dir) == [], 10, 0.05)


# -- bursts of single calls ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FAKE_KINDS)  # local: its 0.02 s window splits a burst on a loaded machine
def test_a_burst_of_submits_leaves_as_one_packed_array(kind, make_queue_under_test):
    q = make_queue_under_test(kind)
    with poolparty.Executor(max_workers=2, **q.pool_options()) as ex:
        futures = [ex.submit(square, i) for i in range(200)]
        assert sorted(f.result() for f in cf.as_completed(futures)) == sorted(x * x for x in range(200))
        assert ex.engine._batch_count == 1  # one burst, one batch
    (sub,) = q.calls(SUBMIT_COMMAND[q.flavor])
    argv = " ".join(sub["argv"])
    chunks = math.ceil(200 / math.ceil(200 / 32))  # 16 chunks per slot at most: 29 of 7 calls, not 200
    first, last = map(int, sub["argv"][sub["argv"].index("--claim") + 1].split("-"))  # its array indices
    assert last - first + 1 == chunks, argv
