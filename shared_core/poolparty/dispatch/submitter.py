"""Submission within the running limit: which waiting chunks go into which array (layout), how many of
its elements may run at once (throttle), and slots of finished arrays handed to older ones (rebalance).

The decisions are pure functions of literal input; :class:`Submitter` applies them through the adapter.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.dispatch.settings import DispatchSettings
from poolparty.dispatch.warm import WarmPool
from poolparty.engine.batch_state import Batch, ChunkRun, Submission
from poolparty.phases import ChunkPhase
from poolparty.queues.base import ArrayRequest
from poolparty.queues.arrays import ArrayPart, compress_indices, layout_array
from poolparty.resources import Resources

log = logging.getLogger("poolparty")


def layout(chunks: Sequence[int], *, array: bool, first_index: int = 0, max_index: int | None = None,
           contiguous: bool = False) -> list[ArrayPart]:
    """The submissions these chunks go in: arrays within the scheduler's index window; plain jobs
    (``array=False``) one part indexed by chunk, one job per index."""
    if not array:
        return layout_array(chunks, first_index=0, max_index=None)
    return layout_array(chunks, first_index=first_index, max_index=max_index, contiguous=contiguous)


def free_slots(max_running: int, submissions: Iterable[Submission]) -> int:
    """Running slots not reserved by a live submission (each reserves its throttle, at most its chunks)."""
    return max_running - sum(s.reserved for s in submissions)


#: the default walltime warning: 10 % of the walltime, at least MIN_LEAD, at most MAX_LEAD seconds
MIN_LEAD, MAX_LEAD = 5, 300


def warning_lead(walltime: int | None, configured: int | None) -> int | None:
    """Seconds before its walltime a job is warned (``walltime_signal_lead``; None: the default); never
    more than half the walltime. None: no walltime, or a lead of 0 (no warning)."""
    if not walltime or configured == 0:
        return None
    lead = configured if configured is not None else min(max(walltime // 10, MIN_LEAD), MAX_LEAD)
    return max(1, min(lead, walltime // 2))


def array_request(part: ArrayPart, free: int, *, sub: int, resources: Resources, settings: DispatchSettings,
                  batch_dir: Path, log_dir: Path, throttles: bool = True) -> ArrayRequest:
    """The request for ``part`` with ``free`` slots: an array is throttled to them, plain jobs beyond
    them wait for the next round, as do an array's beyond them where the scheduler cannot throttle
    arrays (``throttles=False``). More chunks than slots and claims on: an element that finished its
    chunk runs those whose own element has not started (``--claim``), within its walltime."""
    if (not settings.array or not throttles) and len(part.indices) > free:
        part = ArrayPart(part.offset, part.indices[:free])
    throttle = min(free, len(part.indices))
    argv: tuple[str, ...] = (settings.python, "-m", "poolparty.node.worker", str(batch_dir), "--sub", str(sub))
    if settings.claims and len(part.indices) > throttle:
        argv += ("--claim", compress_indices(part.indices))
    if resources.walltime and settings.claims and (len(part.indices) > throttle or settings.lingers):
        argv += ("--walltime", str(resources.walltime))
    if settings.lingers:  # see dispatch/warm and node/linger
        from poolparty.dispatch.warm import shape_of

        argv += ("--linger", f"{settings.linger:g}", "--shape", shape_of(resources))
    return ArrayRequest(name=settings.name, part=part, throttle=throttle, resources=resources,
                        script=Path(settings.script), worker_argv=argv, workdir=batch_dir, log_dir=log_dir,
                        warning_lead=warning_lead(resources.walltime, settings.walltime_signal_lead))


@dataclass(frozen=True)
class ThrottleRaise:
    job_id: str
    throttle: int  # the array's new running limit


def throttle_raises(submissions: Sequence[Submission], free: int, max_running: int) -> list[ThrottleRaise]:
    """Free slots go to the oldest arrays whose limit is below what they could use now, in order, each
    assumed to take effect. An array adopted without a job id cannot be changed."""
    out: list[ThrottleRaise] = []
    for s in submissions:
        if free <= 0:
            break
        want = min(len(s.unfinished), max_running)
        if s.throttle < want and s.has_job:
            new = min(want, s.throttle + free)
            out.append(ThrottleRaise(s.job_id, new))
            free -= new - s.throttle
    return out


class Submitter:
    def __init__(self, jobs: PoolJobs, settings: DispatchSettings, warm: WarmPool | None = None):
        self.jobs = jobs
        self.s = settings
        self.warm = warm if warm is not None else WarmPool(jobs, None, 0.0)

    def free_slots(self) -> int:
        return free_slots(self.s.max_running, self.jobs.submissions.values())

    def rebalance(self) -> None:
        """Give slots freed by finishing arrays to older arrays whose running limit is now too low."""
        subs = self.jobs.submissions
        for s in list(subs.values()):
            if not s.unfinished:
                del subs[s.job_id]
        candidates = list(subs.values())
        while candidates:
            for change in throttle_raises(candidates, self.free_slots(), self.s.max_running):
                s = subs[change.job_id]
                if not self.jobs.queue.set_throttle(change.job_id, change.throttle):
                    # refused: its slots stay free for the arrays after it
                    candidates = candidates[candidates.index(s) + 1:]
                    break
                s.throttle = change.throttle
            else:
                return

    def submit_waiting(self, batches: list[Batch]) -> None:
        """Waiting chunks, grouped by resources, submitted while slots are free (oldest batch first)."""
        self.rebalance()
        queue = self.jobs.queue
        for b in batches:
            groups: dict[Resources, list[ChunkRun]] = defaultdict(list)
            for c in b.chunks:
                if c.phase is ChunkPhase.WAITING:
                    groups[c.resources].append(c)
            for resources, runs in groups.items():
                runs = self.warm.offer(b, resources, runs)
                if not runs:
                    continue
                chunks = [c.chunk for c in runs]
                parts = (layout(chunks, array=True, first_index=queue.first_index, max_index=queue.max_array_index(),
                                contiguous=queue.contiguous_arrays)
                         if self.s.array else layout(chunks, array=False))
                for part in parts:
                    free = self.free_slots()
                    if free <= 0:
                        return
                    self._submit(b, part, resources, free)

    def _submit(self, b: Batch, part: ArrayPart, resources: Resources, free: int) -> None:
        self.warm.prepare(b)
        sub = b.take_sub()
        request = array_request(part, free, sub=sub, resources=resources, settings=self.s,
                                batch_dir=b.files.path, log_dir=b.files.incoming,
                                throttles=self.jobs.queue.throttles_arrays)
        job_ids = []
        for submitted in self.jobs.queue.submit(request, array=self.s.array):
            job_ids.append(submitted.job_id)
            self.jobs.stats["submissions"] += 1
            chunks = sorted(submitted.elements)
            b.journal.record_submission(sub, submitted.job_id, chunks, [submitted.elements[ch] for ch in chunks],
                                        resources)
            s = Submission(sub, submitted.job_id, request.throttle if self.s.array else 1)
            self.jobs.add(s)
            for ch in chunks:
                b.chunks[ch].submitted(sub, submitted.elements[ch], s)
            self.warm.submitted(b, sub, submitted.elements)
        log.info("poolparty: %s: %d job(s) submitted (scheduler job id %s), one chunk each", b.handle.label,
                 len(request.part.indices), ", ".join(job_ids))
