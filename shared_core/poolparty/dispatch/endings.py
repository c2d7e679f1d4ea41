"""How batches leave the dispatcher: finished (cleanly or with chunks given up), cancelled by their
caller, or ended with the whole pool when it is aborted (terminate, Ctrl-C, a give-up under
``cancel_pool``, a dispatcher error)."""
from __future__ import annotations

import logging
from concurrent.futures import CancelledError
from typing import Callable

from poolparty.dispatch.collector import Collector
from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.engine.batch_state import Batch, ChunkRun
from poolparty.engine.handle import BatchSink
from poolparty.errors import RetryLimitExceeded
from poolparty.phases import ChunkPhase

log = logging.getLogger("poolparty")


class Endings:
    def __init__(self, jobs: PoolJobs, collector: Collector,
                 on_batch_end: Callable[[Batch, BaseException | None], None]):
        self.jobs = jobs
        self.collector = collector
        self._on_batch_end = on_batch_end

    def finish(self, batches: list[Batch]) -> tuple[str, BaseException] | None:
        """End the finished batches (removed from ``batches``). A batch with a chunk given up under
        ``cancel_pool`` ends nothing more: the abort it calls for is returned."""
        for b in list(batches):
            failed = [c for c in b.chunks if c.phase is ChunkPhase.FAILED]
            if failed and b.give_up_policy == "cancel_pool":
                return f"{b.handle.label} gave up", _gave_up(b, failed)
            if b.finished:
                batches.remove(b)
                self.end(b, _gave_up(b, failed) if failed else None)
        return None

    def end(self, b: Batch, err: BaseException | None) -> None:
        """Close the batch's files, tell the engine (it removes or keeps them), then the caller."""
        for c in b.chunks:
            c.detach()
        self.collector.drop_left_over_logs(b)
        b.store.close()
        b.journal.close()
        self._on_batch_end(b, err)
        b.handle.finish(err)

    def cancel(self, batches: list[Batch], handle: BatchSink) -> None:
        """One batch's jobs cancelled in one call; it ends with CancelledError, the pool goes on."""
        batch = next((b for b in batches if b.handle is handle), None)
        if batch is None:
            return
        # a claimed chunk runs in another element (whose own chunk may be done): that one goes too
        queued = sorted({e for c in batch.chunks if c.phase is ChunkPhase.QUEUED
                         for e in (c.element, c.runner) if e is not None})
        if queued:
            try:
                self.jobs.cancel(queued)
            except Exception as e:
                log.error("poolparty: could not cancel the jobs of %s: %s", batch.handle.label, e)
            else:
                batch.journal.record_cancelled(_queued_chunks(batch))
        for c in batch.chunks:
            if c.phase in (ChunkPhase.QUEUED, ChunkPhase.WAITING):
                c.give_up("cancelled")
        batches.remove(batch)
        self.end(batch, CallerCancelled(f"poolparty: cancelled ({batch.handle.label} cancelled by its caller)"))

    def abort(self, batches: list[Batch], reason: str, error: BaseException | None) -> None:
        """Cancel every job of the pool (by name as well: jobs we lost track of) and end every batch
        (removed from ``batches``) with ``error``; what finished before is kept."""
        if self._cancel_pool(batches, reason):
            for b in batches:
                b.journal.record_cancelled(_queued_chunks(b))
        for b in list(batches):
            batches.remove(b)
            try:
                for c in b.chunks:
                    if c.phase is not ChunkPhase.DONE:
                        self.collector.keep_partial(b, c)
            except Exception:
                pass
            if b.finished and not any(c.phase is ChunkPhase.FAILED for c in b.chunks):
                self.end(b, None)  # everything had arrived: a clean batch, not a casualty
                continue
            self.end(b, error if error is not None else KeyboardInterrupt(reason)
                     if reason == "KeyboardInterrupt" else cancelled(reason))

    def _cancel_pool(self, batches: list[Batch], reason: str) -> bool:
        """Cancel every job of the pool; whether the scheduler took the cancel."""
        name = self.jobs.name
        queued = [c.element for b in batches for c in b.chunks
                  if c.phase is ChunkPhase.QUEUED and c.element is not None]
        try:
            self.jobs.cancel(self.jobs.live_job_ids(), by_name=True)
            if queued:
                log.warning("poolparty: cancelled %d queued job(s) of pool %s (%s)", len(queued), name, reason)
        except Exception as e:
            self.jobs.submissions.clear()
            log.error("poolparty: could not cancel the jobs of pool %s: %s; cancel them by hand: %s", name, e,
                      self.jobs.queue.manual_cancel(name))
            return False
        self.jobs.submissions.clear()
        return True


def _queued_chunks(b: Batch) -> list[int]:
    return [c.chunk for c in b.chunks if c.phase is ChunkPhase.QUEUED]


def _gave_up(b: Batch, failed: list[ChunkRun]) -> RetryLimitExceeded:
    return RetryLimitExceeded({c.chunk: c.last_failure or "?" for c in failed}, {c.chunk: c.tasks for c in failed},
                              str(b.files.path))


class CallerCancelled(CancelledError):
    """A batch its own caller cancelled (an abandoned ``Executor.map``): nothing of it is kept."""


def cancelled(reason: str) -> BaseException:
    """The error a cancelled batch's caller sees."""
    return CancelledError(f"poolparty: cancelled ({reason})")
