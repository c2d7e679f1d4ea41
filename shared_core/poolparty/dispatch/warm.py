"""Warm elements (``linger``) as the driver sees them: the resource shape a submission's elements
advertise, a new batch's chunks offered to warm elements of that shape, and the withdrawal, after a short
moment, of what they did not claim (submitted as usual then).

A chunk a warm element claims is watched through that element's job (its claim record names its home
submission, :attr:`PoolJobs.homes` its element); one lost there is recovered like any lost element.
The decisions (shape, how many chunks to offer, when to withdraw) are pure functions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Mapping

from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.dispatch.recovery import Recovery
from poolparty.engine.batch_state import Batch, ChunkRun, Submission
from poolparty.phases import ChunkPhase
from poolparty.resources import Resources
from poolparty.retry import FailureClass
from poolparty.store.claims import block, is_claimed
from poolparty.store.warm import Offer, live_adverts, make_warm_dir, remove_offer, write_offer

log = logging.getLogger("poolparty")

#: seconds warm elements get to claim offered chunks before the rest is submitted
OFFER_WAIT = 1.0
#: an advert whose heartbeat is older does not count: its element was killed, or is inside a long chunk
#: (an element refreshes it every look and after every chunk, and removes it when it leaves). Busy
#: elements count while their chunks are short: one taken within OFFER_WAIT saves a job start
FRESH = 10.0
#: a claimed chunk whose claim record never names a known runner (its writer died between creating the
#: part file and its first record, or a driver restarted): called lost after this long
UNKNOWN_RUNNER_GRACE = 60.0


def shape_of(resources: Resources) -> str:
    """The resource shape elements advertise and offers name: equal exactly when the rendered resources
    are (jobs with different resources never share a job)."""
    text = json.dumps(resources.to_json(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def offer_size(waiting: int, idle_warm: int) -> int:
    """One chunk per idle warm element: the rest is submitted at once instead of waiting for the moment."""
    return max(0, min(waiting, idle_warm))


def withdraw_due(offered_at: float, now: float, unclaimed: int, wait: float = OFFER_WAIT) -> bool:
    """An offer closes when every chunk of it is claimed or its moment has passed."""
    return unclaimed == 0 or now - offered_at >= wait


@dataclass
class OpenOffer:
    batch: Batch
    shape: str
    sub: int
    chunks: list[ChunkRun]
    at: float


class WarmPool:
    """The driver's side of lingering elements: offers, their withdrawal, and the pool's end."""

    def __init__(self, jobs: PoolJobs, recovery: Recovery | None, linger: float):
        self.jobs = jobs
        self.recovery = recovery
        self.linger = linger
        self.used = False  # elements that linger were submitted: the pool's end cancels what is left
        self._open: list[OpenOffer] = []
        self._withdrawn: set[tuple[int, int]] = set()  # (batch, chunk): not offered again
        self._unknown: dict[tuple[int, int], float] = {}  # claimed, runner unknown: since when

    @property
    def enabled(self) -> bool:
        return self.linger > 0

    def prepare(self, b: Batch) -> None:
        """Before elements that may linger are submitted: the directory where they advertise."""
        if self.enabled and not self.used:
            make_warm_dir(b.files.run)
            self.used = True

    def submitted(self, b: Batch, sub: int, elements: Mapping[int, str]) -> None:
        """Elements that may linger: remembered by home, so a chunk of another batch they claim is watched."""
        if not self.enabled:
            return
        for chunk, element in elements.items():
            self.jobs.homes[(b.number, sub, chunk)] = element

    def offer(self, b: Batch, resources: Resources, runs: list[ChunkRun]) -> list[ChunkRun]:
        """Offer waiting chunks to idle warm elements of their shape; returns those left to submit."""
        if not self.used or not runs:
            return runs
        shape = shape_of(resources)
        candidates = [c for c in runs if (b.number, c.chunk) not in self._withdrawn]
        n = offer_size(len(candidates), live_adverts(b.files.run, shape, FRESH)) if candidates else 0
        if n == 0:
            return runs
        chosen = candidates[:n]
        sub = b.take_sub()
        s = Submission(sub, f"offer-{b.number}.{sub}", len(chosen), offered=True)
        self.jobs.add(s)
        for c in chosen:
            c.offered(sub, s)
        write_offer(b.files.run, shape, Offer(b.number, sub, [c.chunk for c in chosen]))
        self._open.append(OpenOffer(b, shape, sub, chosen, time.monotonic()))
        log.debug("poolparty: %s: %d chunk(s) offered to warm elements", b.handle.label, len(chosen))
        return [c for c in runs if c not in chosen]

    def settle(self, batches: list[Batch], now: float) -> None:
        """Close offers whose moment has passed: what no warm element claimed waits to be submitted."""
        for o in list(self._open):
            mine = [c for c in o.chunks if c.phase is ChunkPhase.QUEUED and c.sub == o.sub]
            unclaimed = [c for c in mine if not is_claimed(o.batch.files.incoming, c.chunk, o.sub)]
            if not withdraw_due(o.at, now, len(unclaimed)):
                continue
            remove_offer(o.batch.files.run, o.shape, o.batch.number, o.sub)  # before the names are taken
            self._open.remove(o)
            for c in unclaimed:
                if block(o.batch.files.incoming, c.chunk, o.sub):
                    c.withdrawn()
                    self._withdrawn.add((o.batch.number, c.chunk))
            for c in mine:
                if c.phase is ChunkPhase.QUEUED and c.runner is None:
                    self._unknown.setdefault((o.batch.number, c.chunk), now)
        self._lost_unknown_runners(batches, now)

    def _lost_unknown_runners(self, batches: list[Batch], now: float) -> None:
        """A claimed offered chunk whose runner never became known is recovered like a lost element."""
        live = {b.number: b for b in batches}
        for (number, chunk), since in list(self._unknown.items()):
            b = live.get(number)
            c = b.chunks[chunk] if b is not None else None
            if b is None or c is None or c.phase is not ChunkPhase.QUEUED or c.runner is not None:
                del self._unknown[(number, chunk)]
            elif now - since > UNKNOWN_RUNNER_GRACE and self.recovery is not None:
                del self._unknown[(number, chunk)]
                self.recovery.job_lost(b, c, FailureClass.VANISHED,
                                       "claimed by a warm element whose job is not known")

    def end(self) -> None:
        """The run ends: elements still lingering (or queued to) are cancelled in one call (no orphans)."""
        if not self.used:
            return
        self.used = False
        try:
            self.jobs.cancel([], by_name=True)
        except Exception as e:
            log.warning("poolparty: could not cancel the pool's lingering elements: %s; they leave by "
                        "themselves within linger seconds (%s)", e, self.jobs.queue.manual_cancel(self.jobs.name))
