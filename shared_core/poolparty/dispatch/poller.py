"""The status poll: at most one scheduler query for the whole pool on an adaptive interval (none when
another pool of the user just asked: queues/shared_status.py), the watcher's verdict on every queued
chunk, and what each verdict sets off."""
from __future__ import annotations

import logging
import time

from poolparty.dispatch.collector import Collector
from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.dispatch.recovery import Recovery
from poolparty.dispatch.watcher import Action, GraceSettings, judge
from poolparty.engine.batch_state import Batch, ChunkRun
from poolparty.phases import ChunkPhase
from poolparty.queues.states import JobStatus
from poolparty.store.incoming import published_chunks

log = logging.getLogger("poolparty")


def awaited_elements(batches: list[Batch]) -> set[str]:
    """The elements whose end still matters: they watch a queued chunk whose result is neither stored nor
    published (a worker may publish between the collector's look and this poll; one listing per batch)."""
    awaited: set[str] = set()
    for b in batches:
        queued = [c for c in b.chunks if c.phase is ChunkPhase.QUEUED and c.watched]
        if queued:
            done = published_chunks(b.files.incoming)
            awaited.update(c.watched for c in queued if c.chunk not in done)
    return awaited


class Poller:
    def __init__(self, jobs: PoolJobs, polling_interval: float, max_restarts: int,
                 collector: Collector, recovery: Recovery):
        self.jobs = jobs
        self.polling_interval = polling_interval  # upper bound of the adaptive interval
        self.max_restarts = max_restarts  # scheduler requeues of one chunk (RetryPolicy.max_preemptions)
        self.collector = collector
        self.recovery = recovery
        self.interval = jobs.queue.min_poll_interval
        self.next_poll = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_poll

    def poll(self, batches: list[Batch], now: float, collected: bool) -> None:
        """Ask the scheduler once; polls come faster while things change (a result collected, a state
        moved, a chunk resubmitted) and slow down to ``polling_interval`` while nothing does."""
        changed = self._poll(batches, now) or collected
        self.interval = (self.jobs.queue.min_poll_interval if changed
                         else min(self.polling_interval, self.interval * 1.5))
        self.next_poll = time.monotonic() + self.interval

    def _poll(self, batches: list[Batch], now: float) -> bool:
        queue = self.jobs.queue
        states = self.jobs.query(awaited_elements(batches))
        changed = states != self.jobs.last_states
        self.jobs.last_states = states
        grace = GraceSettings.of(queue, self.max_restarts)
        to_cancel: list[str] = []
        for b in batches:
            for c in b.chunks:
                watched = c.watched
                if c.phase is ChunkPhase.QUEUED and watched is not None:  # offered, unclaimed: no job yet
                    changed |= self._watch(b, c, watched, states.get(watched), now, grace, to_cancel)
        if to_cancel:
            self.jobs.cancel(to_cancel)
        return changed

    def _watch(self, b: Batch, c: ChunkRun, watched: str, status: JobStatus | None, now: float,
               grace: GraceSettings, to_cancel: list[str]) -> bool:
        """Apply the watcher's verdict on one chunk; True when the chunk was resubmitted or given up."""
        verdict = judge(c.watch, status, now, grace)
        c.watch = verdict.watch
        if verdict.cancel:
            to_cancel.append(watched)
        if verdict.action is Action.HELD:
            log.info("poolparty: job %s is held (%s); waiting for its release", watched,
                     status.reason if status else "")
        elif verdict.action is Action.GIVE_UP:
            self.recovery.give_up(b, c, f"job {watched}: {verdict.detail}")
            return True
        if verdict.action is not Action.FAILED or verdict.failure is None:
            return False
        if self.collector.last_look(b, c) or self.collector.claimed_elsewhere(b, c, watched):
            return False
        self.recovery.job_lost(b, c, verdict.failure, f"job {watched}: {verdict.detail}")
        return True
