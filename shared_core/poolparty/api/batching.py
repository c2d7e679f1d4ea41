"""The one batching window of every way in (Pool, Executor, the Snakemake and Prefect plugins): items
added close together are grouped by resources, each group is one :meth:`Engine.submit` (one array),
and each item is linked to its task's outcome through the way in's :class:`OutcomeSink`."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, Sequence, TypeVar

from poolparty.engine.handle import BatchHandle
from poolparty.errors import RetryLimitExceeded
from poolparty.payload import Payload, SharedFunction
from poolparty.resources import Resources

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine

Item = TypeVar("Item")
ItemContra = TypeVar("ItemContra", contravariant=True)


@dataclass(frozen=True)
class Placement:
    """Where an item went: its batch, its task index there and the chunk (job) that runs it."""

    handle: BatchHandle
    task: int
    chunk: int


class OutcomeSink(Protocol[ItemContra]):
    """How a way in reports outcomes; ``arrived`` and ``failed`` run on the engine's thread: be quick.
    A sink may also have ``started(item, where)``: a job has started the item's chunk (a Future's RUNNING),
    and ``dropped(item)``: the item was withdrawn (a cancelled Future) and is not to be submitted."""

    def submitted(self, placed: Sequence[tuple[ItemContra, Placement]]) -> None:
        """One batch was accepted by the engine (called after its outcomes are linked)."""

    def arrived(self, item: ItemContra, where: Placement) -> None:
        """The item's result is stored: ``where.handle.outcome(where.task)`` reads it."""

    def failed(self, item: ItemContra, where: Placement, error: BaseException) -> None:
        """No result will come for the item (its batch ended without it, or its chunk was given up)."""

    def refused(self, item: ItemContra, error: BaseException) -> None:
        """``Engine.submit`` raised for the item's group: nothing was queued."""


def layout_chunks(n_items: int, tasks_per_job: int | None, max_running: int,
                  chunks_per_slot: int = 1) -> list[range]:
    """Item indices per chunk: ``tasks_per_job`` each, or (None) as many as spread the items over
    ``chunks_per_slot`` chunks per running job, so that a burst of 1,000 with 50 running jobs packs 20
    per job (5 per job with 4 chunks per slot)."""
    per = tasks_per_job or max(1, math.ceil(n_items / (max_running * chunks_per_slot)))
    return [range(start, min(start + per, n_items)) for start in range(0, n_items, per)]


class BatchingWindow(Generic[Item]):
    """Collects items for ``window`` seconds, then submits them; ``window=None``: only on ``flush``.

    The window opens with the first item of a burst; ``quiet=True`` keeps it open while items keep
    coming (each one restarts it), for at most ``max_hold`` seconds after the burst's first item.
    ``hold``/``release`` keep a burst open however long it takes (a ``map`` submitting its items one by
    one); the last ``release`` submits at once. ``tasks_per_job=None`` packs a burst into
    ``chunks_per_slot`` chunks per running job (see :func:`layout_chunks`).
    """

    def __init__(self, engine: "Engine", sink: OutcomeSink[Item], *, window: float | None, kind: str,
                 give_up_policy: str = "cancel_pool", quiet: bool = False, tasks_per_job: int | None = 1,
                 fail_given_up: bool = False, noun: str = "task", shared: SharedFunction | None = None,
                 chunks_per_slot: int = 1, max_hold: float | None = None):
        self.engine = engine
        self.shared = shared  # what every batch of this window shares (a pool's initializer)
        self.sink = sink
        self.window = window
        self.kind = kind
        self.give_up_policy = give_up_policy
        self.quiet = quiet
        self.tasks_per_job = tasks_per_job
        self.chunks_per_slot = chunks_per_slot
        self.max_hold = max_hold
        self.fail_given_up = fail_given_up  # fail a given-up chunk's items at once, not at the batch's end
        self.noun = noun  # what an item is, in "ended without this task's result"
        self._cond = threading.Condition()
        self._pending: list[tuple[Item, Payload, Resources]] = []
        self._deadline = 0.0
        self._opened = 0.0  # when the pending burst's first item came
        self._holds = 0
        self._waiter: threading.Thread | None = None
        self._submitting = threading.RLock()  # one burst at a time: close() waits for the one in flight

    def add(self, item: Item, payload: Payload, resources: Resources) -> None:
        """Queue one item; it leaves with the others of its burst that share its resources."""
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._opened = now
            if not self._pending or self.quiet:
                self._deadline = now + (self.window or 0.0)
                if self.max_hold is not None:  # a steady stream of items still leaves now and then
                    self._deadline = min(self._deadline, self._opened + self.max_hold)
            self._pending.append((item, payload, resources))
            if self.window is not None and self._waiter is None:
                self._waiter = threading.Thread(target=self._wait_then_flush, daemon=True,
                                                name=f"poolparty-window-{self.kind}")
                self._waiter.start()

    def hold(self) -> None:
        """Keep the current and next items together until the matching :meth:`release`."""
        with self._cond:
            self._holds += 1

    def release(self) -> None:
        """End one :meth:`hold`; the last one submits what is pending at once."""
        with self._cond:
            self._holds -= 1
            held = self._holds > 0
            self._cond.notify_all()
        if not held:
            self.flush()

    def flush(self) -> None:
        """Submit everything pending now (the caller's thread): one engine batch per resources."""
        with self._submitting:
            with self._cond:
                items, self._pending = self._pending, []
                self._cond.notify_all()  # a waiting window thread finds nothing due and ends
            dropped = getattr(self.sink, "dropped", None)
            if dropped is not None:
                items = [entry for entry in items if not dropped(entry[0])]
            groups: dict[Resources, list[tuple[Item, Payload]]] = {}
            for item, payload, resources in items:
                groups.setdefault(resources, []).append((item, payload))
            for resources, members in groups.items():
                self._submit(resources, members)

    def _wait_then_flush(self) -> None:
        with self._cond:
            while self._pending:
                left = self._deadline - time.monotonic()
                if left <= 0 and not self._holds:
                    break
                self._cond.wait(left if left > 0 else None)
            due = bool(self._pending)  # else flushed meanwhile (close, release): nothing is due
            self._waiter = None
        if due:
            self.flush()

    def _submit(self, resources: Resources, members: list[tuple[Item, Payload]]) -> None:
        layout = layout_chunks(len(members), self.tasks_per_job, self.engine.max_running, self.chunks_per_slot)
        chunks = [[(i, members[i][1]) for i in indices] for indices in layout]
        try:
            handle = self.engine.submit(self.shared, chunks, resources, kind=self.kind,
                                        give_up_policy=self.give_up_policy)
        except BaseException as e:
            for item, _ in members:
                self.sink.refused(item, e)
            if not isinstance(e, Exception):  # Ctrl-C or an exit: every item knows, and the caller stops
                raise
            return
        placed = [(members[i][0], Placement(handle, i, c)) for c, indices in enumerate(layout) for i in indices]
        self._link(handle, placed)
        self.sink.submitted(placed)

    def _link(self, handle: BatchHandle, placed: list[tuple[Item, Placement]]) -> None:
        """Each task's outcome to its item, once: arrived, or failed when its batch ends without it."""
        reported: set[int] = set()
        lock = threading.Lock()

        def first_time(task: int) -> bool:
            with lock:
                if task in reported:
                    return False
                reported.add(task)
                return True

        def on_task(task: int, ok: bool, payload: bytes) -> None:
            if first_time(task):
                self.sink.arrived(*placed[task])

        def on_give_up(chunk: int, tasks: list[int], why: str) -> None:
            error = RetryLimitExceeded({chunk: why}, {chunk: tasks}, handle.batch_dir or "")
            for task in tasks:
                if first_time(task):
                    self.sink.failed(*placed[task], error)

        def on_done(h: BatchHandle) -> None:
            error = h.error or RuntimeError(f"{h.label} ended without this {self.noun}'s result")
            for task in range(len(placed)):
                if first_time(task):
                    self.sink.failed(*placed[task], error)

        handle.add_task_callback(on_task)
        started = getattr(self.sink, "started", None)
        if started is not None:
            def on_start(tasks: list[int]) -> None:
                for task in tasks:
                    started(*placed[task])

            handle.add_start_callback(on_start)
        if self.fail_given_up:
            handle.add_give_up_callback(on_give_up)
        handle.add_done_callback(on_done)
