"""A warm element (``linger``): an array element that has run out of chunks stays a little while and runs
chunks of later batches of the same run that the driver offers to its resource shape.

Callers that hand work over a few tasks at a time (Snakemake's scheduling rounds, a streaming map) would
otherwise pay a job start for each small batch, and a warm process (a Snakemake element's imported
Snakemake) would be thrown away. The element advertises itself (:class:`poolparty.store.warm.Advert`,
its heartbeat), claims offered chunks through :func:`poolparty.store.claims.claim` exactly as it claims
chunks of its own array (no chunk ever runs twice), and leaves when it has been idle ``linger`` seconds,
when its walltime is near, or when the run's ``warm/`` directory is gone (the run ended). An idle element
costs at most ``linger`` seconds of its slot.
"""
from __future__ import annotations

import time
from pathlib import Path

from poolparty.node.worker import ChunkRunner, job_token, wait_for_the_driver
from poolparty.store.claims import is_claimed
from poolparty.store.inputs import BatchFiles
from poolparty.store.layout import batch_dir, parse_batch_dir_name
from poolparty.store.warm import Advert, Offer, read_offers

#: how often a lingering element looks for offers (one listing of ``warm/``)
LOOK_INTERVAL = 0.1


def linger(files: BatchFiles, own: int, sub: int, shape: str, seconds: float, walltime_end: float | None,
           longest: float) -> None:
    """Run offered chunks until idle for ``seconds``; ``walltime_end`` (monotonic): the job's limit, so
    that a chunk is taken only while twice the longest one so far (``longest`` to start with) fits."""
    run = files.run
    home = (parse_batch_dir_name(files.path.name) or 0, sub)
    # the job token alone is not unique where the scheduler gives an array's elements one id (SGE, LSF)
    advert = Advert(run, shape, f"{job_token()}_{home[0]}_{home[1]}_{own}")
    runners: dict[tuple[int, int], ChunkRunner] = {}
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < seconds:
            if walltime_end is not None and time.monotonic() + 2 * longest > walltime_end:
                return
            if not advert.refresh():
                return  # the run ended
            offers = read_offers(run, shape)
            if offers is None:
                return
            t0 = time.monotonic()
            if _run_one(run, [o for o in offers if (o.batch, o.sub) > home], own, home, runners):
                longest = max(longest, time.monotonic() - t0)
                idle_since = time.monotonic()
                continue
            time.sleep(LOOK_INTERVAL)
    finally:
        advert.remove()


def _run_one(run: Path, offers: list[Offer], own: int, home: tuple[int, int],
             runners: dict[tuple[int, int], ChunkRunner]) -> bool:
    """Claim and run one offered chunk not claimed yet; whether one ran."""
    for offer in offers:
        files = BatchFiles(batch_dir(run, offer.batch))
        for chunk in offer.chunks:
            if is_claimed(files.incoming, chunk, offer.sub):
                continue
            runner = runners.get((offer.batch, offer.sub))
            if runner is None:
                try:
                    runner = runners[(offer.batch, offer.sub)] = ChunkRunner(files, offer.sub, own, home)
                except (OSError, ValueError):  # the batch ended meanwhile
                    break
            wait_for_the_driver(files.incoming)
            try:
                if runner.run(chunk, capture=True) is not None:
                    return True
            except FileNotFoundError:  # its batch ended (withdrawn and stored elsewhere)
                break
    return False
