"""The dispatcher's thread: takes batches and cancel, abort and stop requests in, and sequences the
rooms that decide: collect results, poll the scheduler, submit, end finished batches.

It runs in one background thread per pool. Results are noticed by listing ``incoming/`` (no scheduler
call); the scheduler is asked about the whole pool in one query per poll, on an adaptive interval,
only to notice jobs that stopped making progress without a result.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from poolparty.dispatch.adoption import plan_adoption
from poolparty.dispatch.collector import Collector
from poolparty.dispatch.endings import Endings
from poolparty.dispatch.poller import Poller
from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.dispatch.recovery import Recovery
from poolparty.dispatch.settings import DispatchSettings
from poolparty.dispatch.submitter import Submitter
from poolparty.dispatch.warm import WarmPool
from poolparty.engine.batch_state import Batch, Submission
from poolparty.engine.handle import BatchSink
from poolparty.phases import ChunkPhase
from poolparty.queues.base import QueueAdapter
from poolparty.queues.states import JobState
from poolparty.store.incoming import RecordedTasks

log = logging.getLogger("poolparty")

__all__ = ["Dispatcher", "DispatchSettings"]


class Dispatcher:
    """One per pool: its thread drives every batch of the pool; other threads only hand in requests."""

    def __init__(self, queue: QueueAdapter, settings: DispatchSettings,
                 on_batch_end: Callable[[Batch, BaseException | None], None]):
        self.queue = queue
        self.s = settings
        self._cond = threading.Condition()
        self._new: list[Batch] = []
        self._cancel_requests: list[BatchSink] = []
        self._batches: list[Batch] = []
        self._stop = False
        self._abort: tuple[str, BaseException | None] | None = None
        self.jobs = PoolJobs(queue, settings.name)
        self.collector = Collector(self.jobs, settings.claims, settings.lingers)
        self.recovery = Recovery(self.jobs, settings.retry, self.collector)
        self.poller = Poller(self.jobs, settings.polling_interval, settings.retry.max_preemptions,
                             self.collector, self.recovery)
        self.warm = WarmPool(self.jobs, self.recovery, settings.linger if settings.lingers else 0.0)
        self.submitter = Submitter(self.jobs, settings, self.warm)
        self.endings = Endings(self.jobs, self.collector, on_batch_end)
        self._recorded: dict[Path, RecordedTasks] = {}  # per batch dir: tasks inside running chunks
        self._progress_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"poolparty-{settings.name}", daemon=True)
        self._thread.start()

    # -- called from other threads -------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        with self._cond:
            self._new.append(batch)
            self._cond.notify_all()

    def abort(self, reason: str, error: BaseException | None = None) -> None:
        """Cancel every job of the pool and fail every unfinished batch; returns when done."""
        with self._cond:
            if self._abort is None:
                self._abort = (reason, error)
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def cancel_batch(self, handle: BatchSink) -> None:
        """Cancel one batch's jobs (the pool goes on); its handle finishes with CancelledError."""
        with self._cond:
            self._cancel_requests.append(handle)
            self._cond.notify_all()

    def stop(self) -> None:
        """Let the submitted batches finish, then end the thread; returns when it has ended."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def stats(self) -> dict[str, int]:
        """Scheduler calls so far: submissions, resubmissions, polls, cancels."""
        return self.jobs.stats

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._new or self._batches)

    @property
    def alive(self) -> bool:
        """The dispatcher's thread is running (it ends after stop, abort, or an error it cannot survive)."""
        return self._thread.is_alive()

    def progress(self) -> dict[str, int]:
        """A snapshot for progress bars and ``poolparty status``: chunks and tasks by phase. Tasks done
        count those recorded inside chunks still running (their worker files), not only stored ones."""
        with self._progress_lock:
            return self._progress()

    def _progress(self) -> dict[str, int]:
        snap = {"batches": 0, "tasks": 0, "tasks_done": 0, "chunks_waiting": 0, "chunks_queued": 0,
                "chunks_running": 0, "chunks_done": 0, "chunks_failed": 0,
                "resubmissions": self.stats["resubmissions"]}
        states = self.jobs.last_states
        batches = list(self._batches)
        self._recorded = {b.files.incoming: self._recorded.get(b.files.incoming) or RecordedTasks(b.files.incoming)
                          for b in batches}
        for b in batches:
            snap["batches"] += 1
            snap["tasks"] += b.handle.n_tasks
            stored = b.store.stored
            snap["tasks_done"] += len(stored) + sum(1 for t in self._recorded[b.files.incoming].tasks()
                                                    if t not in stored)
            for c in list(b.chunks):
                snap[f"chunks_{c.phase.value}"] += 1
                st = states.get(c.watched or "")
                if c.phase is ChunkPhase.QUEUED and st is not None and st.state is JobState.RUNNING:
                    snap["chunks_running"] += 1
        return snap

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._abort and not self._new and not self._cancel_requests:
                    self._cond.wait(self.s.tick if self._batches else 1.0)  # idle: new work notifies
                new, self._new = self._new, []
                cancels, self._cancel_requests = self._cancel_requests, []
                abort, stop = self._abort, self._stop
            self._accept(new)
            del new  # no frame-local reference may keep a finished batch (and its pool) alive
            if abort is not None:
                self.endings.abort(self._batches, *abort)
                return
            for handle in cancels:
                self.endings.cancel(self._batches, handle)
            del cancels
            try:
                self._step()
            except Exception as e:  # a scheduler that stays broken: nothing may hang, nothing orphaned
                log.error("poolparty: the dispatcher failed: %s", e)
                self.endings.abort(self._batches, f"dispatcher error: {e}", e)
                return
            if stop and not self._batches:
                self.warm.end()  # elements still lingering go with the run
                return

    def _accept(self, new: list[Batch]) -> None:
        self._batches.extend(new)
        for b in new:
            self._adopt(b)

    def _step(self) -> None:
        now = time.monotonic()
        changed = self.collector.collect(self._batches)
        if any(c.phase is ChunkPhase.QUEUED for b in self._batches for c in b.chunks) and self.poller.due(now):
            self.poller.poll(self._batches, now, collected=changed)
        self.warm.settle(self._batches, now)
        self.submitter.submit_waiting(self._batches)
        self._finish_batches()

    def _adopt(self, b: Batch) -> None:
        """Chunks the journal says are queued are adopted: the next poll tells whether they live."""
        plan = plan_adoption(b.journal.replay(), b.chunks, b.number)
        b.next_sub = max(b.next_sub, plan.next_sub)
        if self.s.claims:  # a driver killed between storing results and saying so: say it before any file goes
            b.journal.record_stored(plan.unrecorded_stored)
        if plan.reopened:  # before they are submitted: the workers must run them again
            b.journal.record_reopened(plan.reopened)
            log.warning("poolparty: %s: chunk(s) %s were stored, but results.rec no longer holds all their "
                        "results (damaged): they are recomputed", b.handle.label, plan.reopened)
        for chunk, (sub, element) in plan.done_jobs.items():
            b.chunks[chunk].ran_as(sub, element)
        for r in plan.restored:
            b.chunks[r.chunk].restore(r.resources, r.resubmissions)
        for a in plan.submissions:
            s = Submission(a.sub, a.job_id, self.s.max_running)
            for chunk, element in a.elements.items():
                b.chunks[chunk].submitted(a.sub, element, s)
            self.jobs.add(s)
        if plan.submissions:
            log.info("poolparty: %s: adopted %d job(s) the last run left in the queue (from its journal)",
                     b.handle.label, plan.adopted)

    # -- how batches end -----------------------------------------------------------------------
    def _finish_batches(self) -> None:
        gave_up = self.endings.finish(self._batches)
        if gave_up is not None:  # cancel_pool: the pool's jobs go, the pool itself goes on
            self.endings.abort(self._batches, *gave_up)
            with self._cond:
                self._abort = None
