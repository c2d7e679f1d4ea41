"""Streaming maps (``Pool.imap``/``imap_unordered``, ``Executor.map``): inputs are read lazily, a window
at a time, each window leaves as one batch (one array), and outcomes are handed out as they arrive.

A sized sequence (list, tuple, range, any ``collections.abc.Sequence``) is one window: one array per map,
as ``Pool.map``. Any other iterable is read by a feeder thread, as multiprocessing's task handler reads
it: the next window is read and submitted when the running slots are about to run dry, and never while
more than :data:`BUFFERED_WINDOWS` windows wait to be consumed, so the driver's memory stays bounded
whatever the input's length (an infinite generator included). An exception raised by the input iterator
becomes the outcome at its position: the results before it come out, then it is raised, then the
iteration ends (multiprocessing 3.11 does the same).
"""
from __future__ import annotations

import collections
import collections.abc
import itertools
import math
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from poolparty.engine.handle import BatchHandle

#: chunks per running slot in one window of a streamed map: enough that the slots stay busy while the
#: next window is read and submitted
WINDOW_CHUNKS_PER_SLOT = 4
#: a window holds at least this many chunks: each window is one submission (a new array), so tiny
#: windows would mean one scheduler call per few tasks
MIN_WINDOW_CHUNKS = 64
#: submitted windows whose outcomes are not consumed yet beyond which the feeder waits for the consumer
BUFFERED_WINDOWS = 2
#: chunks per running slot when a map's ``chunksize`` is not given (see :func:`default_chunksize`)
CHUNKS_PER_SLOT = 16

#: submits one window: its chunks of (task index within the window, input) -> the batch's handle
SubmitChunks = Callable[[list[list[tuple[int, Any]]]], BatchHandle]


def is_sized(iterable: Iterable[Any]) -> bool:
    """A sequence whose length is known without reading it: it leaves as one array."""
    return isinstance(iterable, collections.abc.Sequence)


def default_chunksize(n_items: int | None, max_running: int) -> int:
    """Tasks per chunk when a streamed map's ``chunksize`` is not given: 1 (multiprocessing's rule) for
    an iterator, and for a sequence as many as make :data:`CHUNKS_PER_SLOT` chunks per running slot.
    Every chunk costs a file round trip through the work_dir and, on a cluster, an array element, where
    multiprocessing pays one pipe message: 2,000 one-task chunks cost the local queue more than the
    tasks themselves, while 16 chunks per slot still hand results out in 16 waves per slot."""
    if n_items is None:
        return 1
    return max(1, math.ceil(n_items / (max_running * CHUNKS_PER_SLOT)))


def window_size(chunksize: int, max_running: int) -> int:
    """Inputs per window of an iterator: a few chunks per running slot, at least :data:`MIN_WINDOW_CHUNKS`."""
    return chunksize * max(WINDOW_CHUNKS_PER_SLOT * max_running, MIN_WINDOW_CHUNKS)


def cut_chunks(items: list[Any], chunksize: int) -> list[list[tuple[int, Any]]]:
    """A window's inputs as chunks of (task index within the window, input)."""
    return [list(enumerate(items[i:i + chunksize], start=i)) for i in range(0, len(items), chunksize)]


class _Window:
    """One submitted window: its batch, where it starts in the map, and the outcomes not yet taken."""

    def __init__(self, handle: BatchHandle, start: int, n: int):
        self.handle, self.start, self.n, self.left = handle, start, n, n
        self.arrived: set[int] = set()


class MapStream:
    """Feeds one map's inputs to the engine window by window and hands out its outcomes.

    ``next`` returns ``(ok, value-or-exception)`` in input order (``ordered``) or as they arrive; it
    raises StopIteration at the end, TimeoutError when nothing came in time, or the error of a batch
    that ended without the outcome (cancelled, given up).
    """

    def __init__(self, submit: SubmitChunks, inputs: Iterable[Any], *, chunksize: int, max_running: int,
                 ordered: bool):
        self._submit = submit
        self._chunksize = chunksize
        self._ordered = ordered
        self._cond = threading.Condition()
        self._windows: collections.deque[_Window] = collections.deque()  # submitted, not all taken
        self._ready_at: dict[int, tuple[_Window, int]] = {}  # ordered: map position -> (window, task)
        self._ready: collections.deque[tuple[_Window, int]] = collections.deque()  # unordered
        self._taken = 0
        self._submitted = 0
        self._settled = 0  # outcomes arrived, or lost with their batch
        self._end: int | None = None  # the number of inputs, once read to the end (or to an error)
        self._input_error: BaseException | None = None  # raised at position ``_end``
        self._stopped = False
        self._draining = False  # the pool closes: read the rest now, whoever consumes it
        self._feeder: threading.Thread | None = None
        if is_sized(inputs):
            self._window_items = max(1, len(inputs))  # type: ignore[arg-type]
            self._add_window(list(inputs))  # one array; bad input raises here, in the caller's line
            self._end = self._submitted
        else:
            self._window_items = window_size(chunksize, max_running)
            self._feeder = threading.Thread(target=self._feed, args=(iter(inputs),), daemon=True,
                                            name="poolparty-map-feeder")
            self._feeder.start()

    # -- the consumer's side -------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> tuple[bool, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                got = self._take()
                if got is not None:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no result within {timeout} s")
                self._cond.wait(0.5 if left is None else min(left, 0.5))
            self._cond.notify_all()  # the feeder may read the next window now
        window, task = got
        return window.handle.outcome(task)

    def _take(self) -> tuple[_Window, int] | None:
        """The next outcome to hand out, if it has arrived (under the lock)."""
        if self._ordered:
            got = self._ready_at.pop(self._taken, None)
        else:
            got = self._ready.popleft() if self._ready else None
        if got is not None:
            self._taken += 1
            got[0].left -= 1
            while self._windows and self._windows[0].left == 0:  # its results are no longer kept
                self._windows.popleft()
            return got
        lost = self._lost_window()
        if lost is not None:
            raise lost.handle.error or RuntimeError(f"{lost.handle.label} ended without all its results")
        if self._end is not None and self._taken >= self._end:
            error, self._input_error = self._input_error, None
            self._end = self._taken  # raised once; the iteration ends after it
            if error is not None:
                raise error
            raise StopIteration
        return None

    def _lost_window(self) -> _Window | None:
        """A finished batch that will not deliver the outcome to hand out next."""
        for w in self._windows:
            if not w.handle.done():
                continue
            if self._ordered:
                if w.start <= self._taken < w.start + w.n and self._taken - w.start not in w.arrived:
                    return w
            elif len(w.arrived) < w.n:
                return w
        return None

    def drain(self) -> None:
        """The pool closes: read and submit the remaining inputs without waiting for the consumer."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def wait_fed(self) -> None:
        """Return once every input is read and submitted (or the feeding stopped)."""
        if self._feeder is not None and self._feeder is not threading.current_thread():
            self._feeder.join()

    def stop(self) -> list[BatchHandle]:
        """Read no more input; returns the batches not finished (for the caller to cancel)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            return [w.handle for w in self._windows if not w.handle.done()]

    # -- the feeder's side ---------------------------------------------------------------------
    def _wants_more(self) -> bool:
        half = self._window_items // 2
        running_dry = self._submitted - self._settled <= half
        unconsumed = self._submitted - self._taken
        return self._draining or (running_dry and unconsumed < BUFFERED_WINDOWS * self._window_items)

    def _feed(self, inputs: Iterator[Any]) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._wants_more():
                    self._cond.wait()
                if self._stopped:
                    return
            items: list[Any] = []
            error: BaseException | None = None
            try:  # the user's iterator runs outside the lock: it may be slow
                items.extend(itertools.islice(inputs, self._window_items))
            except BaseException as e:  # as multiprocessing: the iterator's error is the next outcome
                error = e
            if items:
                try:
                    self._add_window(items)
                except BaseException as e:  # refused (pool closed, unpicklable input): the iteration ends here
                    error = e
            with self._cond:
                if error is not None or len(items) < self._window_items:
                    self._end, self._input_error = self._submitted, error
                    self._cond.notify_all()
                    return

    def _add_window(self, items: list[Any]) -> None:
        handle = self._submit(cut_chunks(items, self._chunksize))
        window = _Window(handle, self._submitted, len(items))
        with self._cond:
            self._windows.append(window)
            self._submitted += len(items)
        handle.add_task_callback(lambda task, ok, payload: self._arrived(window, task))
        for task in list(handle._order):  # delivered at submission already (a resumed work_dir)
            self._arrived(window, task)
        handle.add_done_callback(lambda h: self._ended(window))

    def _arrived(self, window: _Window, task: int) -> None:
        with self._cond:
            if task in window.arrived:
                return
            window.arrived.add(task)
            self._settled += 1
            if self._ordered:
                self._ready_at[window.start + task] = (window, task)
            else:
                self._ready.append((window, task))
            self._cond.notify_all()

    def _ended(self, window: _Window) -> None:
        with self._cond:
            self._settled += window.n - len(window.arrived)  # lost with their batch: no longer running
            self._cond.notify_all()
