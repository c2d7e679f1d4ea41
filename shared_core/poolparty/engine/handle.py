"""The caller's view of one submitted batch: wait for it, iterate its results, get its exception."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol

import cloudpickle

from poolparty.errors import RemoteError, RemoteTraceback
from poolparty.payload import ExceptionInfo


def rebuild_exception(info: ExceptionInfo, where: str) -> BaseException:
    """The original exception type when it unpickled, with the remote traceback as cause and note."""
    exc = info.exc if info.exc is not None else RemoteError(info.type_name, info.message)
    exc.__cause__ = RemoteTraceback(info.traceback, info.stage, info.value)
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised on the compute node, {where}; remote traceback above)")
    return exc


class BatchSink(Protocol):
    """What the dispatcher tells a batch's caller, from its own thread: the only calls it makes."""

    label: str  # for messages: "batch N of pool NAME"
    n_tasks: int

    def deliver(self, items: list[tuple[int, bool, bytes]]) -> None:
        """Outcomes just stored: (task, ok, pickled value or pickled exception info)."""

    def chunk_started(self, chunk: int, tasks: list[int]) -> None:
        """A job has started running this chunk (its claim record is on disk): its tasks are RUNNING."""

    def chunk_given_up(self, chunk: int, tasks: list[int], why: str) -> None:
        """A chunk was given up: these of its tasks will have no result (the batch goes on)."""

    def finish(self, error: BaseException | None = None) -> None:
        """The batch ended: cleanly (None), given up, cancelled or aborted (the error its caller sees)."""


class BatchHandle:
    """Filled by the dispatcher thread (as a :class:`BatchSink`), read by the caller. Results stay
    pickled until asked for."""

    def __init__(self, n_tasks: int, label: str):
        self.n_tasks = n_tasks
        self.label = label
        self._raw: dict[int, tuple[bool, bytes]] = {}
        self._order: list[int] = []  # completion order
        self._error: BaseException | None = None
        self._done = False
        self._cond = threading.Condition()
        self._callbacks: list[Callable[["BatchHandle"], None]] = []
        self._task_callbacks: list[Callable[[int, bool, bytes], None]] = []
        self._give_up_callbacks: list[Callable[[int, list[int], str], None]] = []
        self._start_callbacks: list[Callable[[list[int]], None]] = []
        self._started: set[int] = set()  # chunks a job has started (a resubmission starts them again)
        self.work_dir: str | None = None
        self.batch_dir: str | None = None  # this batch's files (inputs, results, logs, journal)
        self.kind = "map"  # what made the batch: map, calls, snakemake, prefect (as meta.json says)
        self.efficiency: list[str] | None = None  # the efficiency report's summary, set as the map ends

    # -- dispatcher side (BatchSink) -----------------------------------------------------------
    def deliver(self, items: list[tuple[int, bool, bytes]]) -> None:
        with self._cond:
            for task, ok, payload in items:
                if task not in self._raw:
                    self._raw[task] = (ok, payload)
                    self._order.append(task)
            self._cond.notify_all()
        for task, ok, payload in items:
            for cb in self._task_callbacks:
                cb(task, ok, payload)

    def chunk_started(self, chunk: int, tasks: list[int]) -> None:
        if chunk in self._started:
            return
        self._started.add(chunk)
        for cb in self._start_callbacks:
            cb(tasks)

    def chunk_given_up(self, chunk: int, tasks: list[int], why: str) -> None:
        """A chunk was given up: these of its tasks will have no result (the batch goes on)."""
        for cb in self._give_up_callbacks:
            cb(chunk, tasks, why)

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if self._done:
                return
            self._error = error
            self._done = True
            self._cond.notify_all()
        for cb in self._callbacks:
            cb(self)

    # -- caller side ---------------------------------------------------------------------------
    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    @property
    def error(self) -> BaseException | None:
        return self._error

    def add_done_callback(self, fn: Callable[["BatchHandle"], None]) -> None:
        with self._cond:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def add_task_callback(self, fn: Callable[[int, bool, bytes], None]) -> None:
        self._task_callbacks.append(fn)

    def add_start_callback(self, fn: Callable[[list[int]], None]) -> None:
        """``fn(tasks)`` once a job has started the chunk holding these tasks (the dispatcher's thread)."""
        self._start_callbacks.append(fn)

    def add_give_up_callback(self, fn: Callable[[int, list[int], str], None]) -> None:
        """``fn(chunk, tasks, why)`` when a chunk is given up, with its tasks that have no result: a
        caller can fail those at once instead of when the whole batch ends (the dispatcher's thread)."""
        self._give_up_callbacks.append(fn)

    def outcome(self, task: int) -> tuple[bool, Any]:
        """(True, value) or (False, exception) for a finished task."""
        ok, payload = self._raw[task]
        value = cloudpickle.loads(payload)
        if ok:
            return True, value
        return False, rebuild_exception(value, f"task {task} of {self.label}")

    def results(self, timeout: float | None = None) -> list[Any]:
        """All values in task order; raises the batch error or the first failed task's exception."""
        if not self.wait(timeout):
            raise TimeoutError(f"{self.label} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        out = []
        first_exc: BaseException | None = None
        for i in range(self.n_tasks):
            ok, value = self.outcome(i)
            if not ok and first_exc is None:
                first_exc = value
            out.append(value)
        if first_exc is not None:
            raise first_exc
        return out

    def successful(self) -> bool:
        return self._done and self._error is None and all(ok for ok, _ in self._raw.values())

    def cursor(self, ordered: bool) -> "OutcomeCursor":
        return OutcomeCursor(self, ordered)


class OutcomeCursor:
    """Walks a batch's outcomes as they arrive, in task order or in completion order."""

    def __init__(self, handle: BatchHandle, ordered: bool):
        self.h = handle
        self.ordered = ordered
        self.seen = 0

    def next(self, timeout: float | None = None) -> tuple[int, bool, Any]:
        """(task, ok, value-or-exception); StopIteration at the end; TimeoutError if nothing came."""
        h = self.h
        if self.seen >= h.n_tasks:
            raise StopIteration
        deadline = None if timeout is None else time.monotonic() + timeout
        with h._cond:
            while True:
                ready = (self.seen in h._raw) if self.ordered else (self.seen < len(h._order))
                if ready:
                    break
                if h._done:
                    if h._error is not None:
                        raise h._error
                    raise RuntimeError(f"{h.label} finished without all results (internal error)")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{h.label}: no result within {timeout} s")
                h._cond.wait(0.5 if left is None else min(0.5, left))
            task = self.seen if self.ordered else h._order[self.seen]
        self.seen += 1
        ok, value = h.outcome(task)
        return task, ok, value
