"""The run's ``warm/`` directory: where lingering elements say they are alive and the driver offers them
chunks of later batches (``linger``).

A warm element (an array element that ran out of chunks and lingers) keeps an *advert* there, a file
named after its resource shape and job token whose modification time is its heartbeat. When a batch
comes whose chunks have that shape, the driver writes an *offer*: the chunks of one submission number
that warm elements may claim (through :mod:`poolparty.store.claims`, so no chunk ever runs twice). The
driver withdraws the offer after a short moment and submits what was not claimed. Offers are JSON, never
pickles: a chunk's inputs are read from its batch, through the trust door, as any element reads them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from poolparty.store.layout import advert_name, is_advert_of, offer_name, parse_offer_name, warm_dir


class Offer(NamedTuple):
    batch: int
    sub: int
    chunks: list[int]


def make_warm_dir(run: Path) -> None:
    """Created by the driver before it submits elements that linger (private, as every run directory)."""
    from poolparty.store.trust import make_private_dir

    make_private_dir(warm_dir(run))


class Advert:
    """A lingering element's advert: refreshed while it looks for work, removed when it leaves."""

    def __init__(self, run: Path, shape: str, job: str):
        self.path = warm_dir(run) / advert_name(shape, job)

    def refresh(self) -> bool:
        """Touch the advert (created if missing); False once the run's ``warm/`` is gone: the run ended."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return False
        os.close(fd)
        os.utime(self.path)
        return True

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def live_adverts(run: Path, shape: str, fresh: float, now: float | None = None) -> int:
    """Warm elements of ``shape`` whose heartbeat is younger than ``fresh`` seconds (wall clock)."""
    now = time.time() if now is None else now
    d = warm_dir(run)
    try:
        names = [n for n in os.listdir(d) if is_advert_of(n, shape)]
    except FileNotFoundError:
        return 0
    count = 0
    for name in names:
        try:
            if now - os.stat(d / name).st_mtime < fresh:
                count += 1
        except FileNotFoundError:
            pass
    return count


def write_offer(run: Path, shape: str, offer: Offer) -> None:
    from poolparty.store.atomic import write_json

    write_json(warm_dir(run) / offer_name(shape, offer.batch, offer.sub), {"chunks": offer.chunks})


def remove_offer(run: Path, shape: str, batch: int, sub: int) -> None:
    try:
        (warm_dir(run) / offer_name(shape, batch, sub)).unlink()
    except FileNotFoundError:
        pass


def read_offers(run: Path, shape: str) -> list[Offer] | None:
    """The offers open to warm elements of ``shape``, oldest batch first; None once ``warm/`` is gone."""
    d = warm_dir(run)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return None
    out = []
    for name in names:
        parsed = parse_offer_name(name)
        if parsed is None or parsed.shape != shape:
            continue
        try:
            with open(d / name, "rb") as f:
                chunks = json.load(f).get("chunks", [])
        except (FileNotFoundError, ValueError, AttributeError):  # withdrawn meanwhile, or not ours
            continue
        if isinstance(chunks, list) and all(isinstance(c, int) for c in chunks):
            out.append(Offer(parsed.batch, parsed.sub, chunks))
    return sorted(out)
