"""One flow run's traffic between Prefect and the poolparty core.

``submit`` only records an *order* (task, parameters, upstream futures, the flow run's context) and
returns. An order is released when its upstream futures are done (a done-callback counts them
down: no thread waits per task run); the release thread turns released orders into job payloads
(upstream futures become their final States, as Prefect's process pool ships them) and adds them
to the core's batching window (:mod:`poolparty.api.batching`), which packs them several to a job
and submits each burst as **one** batch, so a ``.map`` over N items is one array. The completion
thread replays the relayed events and logs, then resolves each task run's future with the final
State its job returned, or with a Crashed or Cancelled state when the core reports a failure.

Scheduling, polling, resubmission and cancellation of jobs are the core's; nothing here talks to
a scheduler.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cloudpickle

from poolparty import Call, Engine, Resources
from poolparty.api.batching import BatchingWindow, Placement
from poolparty.errors import RetryLimitExceeded
from poolparty.store.trust import make_private_dir

from . import outcomes
from .job import JobHeader, run_task_run
from .orders import Order
from .relay import RelayReader
from .shipping import PickledOnce, final_state_of, futures_to_states, pickle_annotations_by_value, upstream_futures
from .tag_slots import TagSlots

log = logging.getLogger("prefect_poolparty")

_FLUSH = object()  # release queue: a map finished submitting (ends its hold on the window)
_STOP = object()


@dataclass
class Completion:
    """The core's word on one task run: a result to unpickle (``error`` None), or a batch error."""

    order: Order
    where: Placement
    error: BaseException | None = None


class Submitter:
    """One flow run's task runs: orders in, released through the batching window, States out."""

    def __init__(self, engine: Engine, *, relay: bool, tasks_per_job: int | None, window: float,
                 relay_interval: float):
        self.engine = engine
        self.work_dir = engine.work_dir  # still known after the engine released it
        self.relay = relay
        self.relay_interval = relay_interval
        self.relay_dir: Path | None = make_private_dir(engine.work_dir / "prefect-relay") if relay else None
        self.header = JobHeader(relay_dir=str(self.relay_dir) if self.relay_dir else None, cwd=os.getcwd())
        self._lock = threading.Lock()
        self._orders: dict[uuid.UUID, Order] = {}  # unresolved
        self._pickled = PickledOnce(resolve_storage=relay)
        self._cancelled: str | None = None
        self._released: "queue.Queue[Any]" = queue.Queue()
        self._completed: "queue.Queue[Completion | object]" = queue.Queue()
        self._tag_slots = TagSlots() if relay else None
        pickle_annotations_by_value()
        self.reader = RelayReader(self.relay_dir, self._context_for) if self.relay_dir else None
        self.stats = {"task_runs": 0, "batches": 0, "crashed": 0, "cancelled": 0}
        # each item restarts the window (quiet): a burst leaves once no task run was released for a while
        self._window: BatchingWindow[Order] = BatchingWindow(
            engine, self, window=window, kind="prefect", give_up_policy="fail_batch", quiet=True,
            tasks_per_job=tasks_per_job, fail_given_up=True, noun="task run")
        self._release_thread = threading.Thread(target=self._release_loop, daemon=True,
                                                name=f"prefect-poolparty-release-{engine.name}")
        self._complete_thread = threading.Thread(target=self._complete_loop, daemon=True,
                                                 name=f"prefect-poolparty-complete-{engine.name}")
        self._release_thread.start()
        self._complete_thread.start()

    # -- submit: the flow's thread ----------------------------------------------------------------
    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any, dependencies: Any,
               resources: Resources, tags: frozenset[str]) -> tuple[uuid.UUID, "cf.Future[Any]"]:
        from prefect._internal.uuid7 import uuid7

        order = Order(task=task, task_run_id=uuid7(), parameters=parameters,
                      wait_for=list(wait_for) if wait_for else None, dependencies=dependencies,
                      resources=resources, tags=tags, context=self._pickled.context(),
                      task_blob=self._pickled.task(task), future=cf.Future())
        upstream = upstream_futures(parameters, order.wait_for)
        with self._lock:
            self._orders[order.task_run_id] = order
            self.stats["task_runs"] += 1
            cancelled = self._cancelled
        if cancelled is not None:
            self._resolve_infrastructure(order, "cancelled", f"not started: {cancelled}")
            return order.task_run_id, order.future
        order.waiting = len(upstream) + 1
        for fut in upstream:
            fut.add_done_callback(lambda _f, o=order: self._upstream_done(o))
        self._upstream_done(order)  # the +1 above: release only after every callback is registered
        return order.task_run_id, order.future

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Keep released orders together until the block ends (``map`` submitting its items); the
        end travels through the release queue, behind the orders released before it."""
        self._window.hold()
        try:
            yield
        finally:
            self._released.put(_FLUSH)

    def _upstream_done(self, order: Order) -> None:
        with order.lock:
            order.waiting -= 1
            ready = order.waiting == 0
        if ready:
            self._released.put(order)

    # -- release: upstream done -> payload -> the batching window ----------------------------------
    def _release_loop(self) -> None:
        while True:
            item = self._released.get()
            if item is _STOP:
                self._window.flush()
                return
            if item is _FLUSH:
                self._window.release()
                continue
            self._prepare(item)

    def _prepare(self, order: Order) -> None:
        if order.future.done():
            return
        with self._lock:
            cancelled = self._cancelled
        if cancelled is not None:
            self._resolve_infrastructure(order, "cancelled", f"not started: {cancelled}")
            return
        try:
            if self._tag_slots is not None and not order.slots_held and order.tags:
                limited = self._tag_slots.limited(order.tags, order.context.captured)
                if limited:
                    self._tag_slots.hold(order, limited, self._released,
                                         lambda o, why: self._resolve_infrastructure(o, "crashed", why))
                    return
            call = {"task_run_id": order.task_run_id, "dependencies": order.dependencies,
                    "parameters": futures_to_states(order.parameters),
                    "wait_for": [final_state_of(f) for f in order.wait_for] if order.wait_for else None}
            blob = cloudpickle.dumps(call)
        except BaseException as e:  # an unpicklable argument: this task run alone crashes
            self._resolve_infrastructure(order, "crashed", f"could not ship the task run: {type(e).__name__}: {e}")
            return
        payload = Call(run_task_run, (self.header, order.context.blob, order.task_blob, blob))
        self._window.add(order, payload, order.resources)

    # -- the window's outcome sink: the engine's thread, be quick -----------------------------------
    def submitted(self, placed: Sequence[tuple[Order, Placement]]) -> None:
        with self._lock:
            self.stats["batches"] += 1

    def arrived(self, order: Order, where: Placement) -> None:
        self._completed.put(Completion(order, where))

    def failed(self, order: Order, where: Placement, error: BaseException) -> None:
        self._completed.put(Completion(order, where, error))  # a given-up chunk: Crashed now, not at the end

    def refused(self, order: Order, error: BaseException) -> None:
        with self._lock:
            cancelled = self._cancelled
        if cancelled is not None:
            self._resolve_infrastructure(order, "cancelled", f"not started: {cancelled}")
        else:
            self._resolve_infrastructure(order, "crashed", f"poolparty could not submit: {error}")

    # -- completion: relay, then resolve ----------------------------------------------------------
    def _complete_loop(self) -> None:
        while True:
            try:
                first = self._completed.get(timeout=self.relay_interval)
            except queue.Empty:
                self._drain_relay()
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self._completed.get_nowait())
                except queue.Empty:
                    break
            self._drain_relay()  # a task run's events are in the API's queue before its future resolves
            for item in batch:
                if item is _STOP:
                    return
                assert isinstance(item, Completion)
                try:
                    self._complete(item)
                except BaseException as e:  # never leave a future unresolved
                    log.exception("prefect_poolparty: resolving task run %s failed", item.order.task_run_id)
                    self._resolve_infrastructure(item.order, "crashed", f"internal error: {e}")

    def _complete(self, c: Completion) -> None:
        order = c.order
        if order.future.done():
            return
        error = c.error
        if error is None:
            try:
                ok, value = c.where.handle.outcome(c.where.task)
            except BaseException as e:  # the State does not unpickle here
                ok, value = False, e
            if ok:
                self._settle(order, value)
                return
            error = value
        kind, message = outcomes.infrastructure_verdict(error, c.where.chunk)
        if isinstance(error, RetryLimitExceeded):
            message += outcomes.log_tail(c.where.handle, c.where.chunk)
        self._resolve_infrastructure(order, kind, message)

    def _resolve_infrastructure(self, order: Order, kind: str, message: str) -> None:
        """Resolve with a Crashed/Cancelled state, recorded in the API as the task run's last state."""
        state = outcomes.final_state(kind, f"{'Crash' if kind == 'crashed' else 'Cancel'}ed by poolparty: {message}",
                                     order.task_run_id, order.context.flow_run_id)
        with self._lock:
            self.stats[kind] += 1
        last = self.reader.last_event.get(str(order.task_run_id)) if self.reader else None
        try:
            outcomes.record_state(state, order.task, order.tags, order.task_run_id, order.context.flow_run_id,
                                  order.context.captured, last)
        except Exception as e:
            log.warning("prefect_poolparty: could not record %s for task run %s: %s", state.name,
                        order.task_run_id, e)
        self._settle(order, state)

    def _settle(self, order: Order, state: Any) -> None:
        with self._lock:
            self._orders.pop(order.task_run_id, None)
        if not order.future.done():
            try:
                order.future.set_result(state)
            except cf.InvalidStateError:
                pass

    def _drain_relay(self) -> None:
        if self.reader is None:
            return
        try:
            self.reader.drain()
        except Exception as e:
            log.warning("prefect_poolparty: relaying events and logs failed: %s", e)

    def _context_for(self, task_run_id: str | None) -> contextvars.Context | None:
        with self._lock:
            order = self._orders.get(uuid.UUID(task_run_id)) if task_run_id else None
        if order is None:  # resolved already, or not one of ours: any context of this flow run
            return self._pickled.any_context()
        return order.context.captured.copy()

    # -- lifecycle ------------------------------------------------------------------------------
    def unresolved(self) -> list["cf.Future[Any]"]:
        with self._lock:
            return [o.future for o in self._orders.values()]

    def wait_all(self) -> None:
        """Wait until every task run submitted so far has its final state."""
        while True:
            pending = self.unresolved()
            if not pending:
                return
            cf.wait(pending)

    def cancel(self, reason: str) -> None:
        """Cancel every job of this flow run at once; every unresolved task run ends Cancelled."""
        with self._lock:
            if self._cancelled is not None:
                return
            self._cancelled = reason
        self.engine.terminate(reason)  # one scancel/qdel by the pool's name; batches end cancelled
        deadline = time.monotonic() + 30
        while self.unresolved() and time.monotonic() < deadline:
            time.sleep(0.05)
            with self._lock:
                stuck = [o for o in self._orders.values() if o.waiting > 0]
            for order in stuck:  # waiting for an upstream that will never come
                self._resolve_infrastructure(order, "cancelled", f"not started: {reason}")

    def close(self) -> None:
        """After ``wait_all`` or ``cancel``: stop the threads, relay the rest, release the work_dir."""
        self._released.put(_STOP)
        self._release_thread.join(timeout=30)
        self._completed.put(_STOP)
        self._complete_thread.join(timeout=60)
        self._drain_relay()
        if self._tag_slots is not None:
            self._tag_slots.close()
        if self.relay_dir is not None:
            shutil.rmtree(self.relay_dir, ignore_errors=True)
        if self._cancelled is None:
            self.engine.close()

    def report(self) -> dict[str, Any]:
        out = self.engine.stats
        with self._lock:
            out.update(self.stats)
        if self.reader is not None:
            out["relayed_events"] = self.reader.replayed["event"]
            out["relayed_logs"] = self.reader.replayed["log"]
        out["work_dir"] = str(self.work_dir)
        out["job_name"] = self.engine.name
        return out
