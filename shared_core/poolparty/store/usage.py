"""What a worker measured of itself, and what a batch asked for: the inputs of the efficiency report that
poolparty keeps itself (the scheduler's accounting is asked by the adapters).

A worker appends one usage record to the part file of each chunk it ran (its process's CPU time, peak
resident memory and wall time so far, so the latest record of an element covers all it ran); the driver
moves them into ``usage.rec`` with the results. The journal says which element of which submission ran a
chunk, with which resources, and why a job was lost. Standard library only on the worker's side.
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolparty.store import records

if TYPE_CHECKING:
    from poolparty.resources import Resources

#: the key that marks a usage record in a part file (a result record has "task", a log record "log")
USAGE = "usage"
_IMPORTED = time.monotonic()


def process_seconds() -> float:
    """Wall seconds since this process started (Linux: from /proc), else since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def measure(runner: int) -> dict[str, Any]:
    """This process's usage so far (its tasks' child processes included), as a part-file record key:
    CPU seconds (user + system), peak resident bytes (ru_maxrss is in KiB on Linux), wall seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return {USAGE: True, "runner": runner, "cpu": round(cpu, 3),
            "rss": max(own.ru_maxrss, children.ru_maxrss) * 1024, "wall": round(process_seconds(), 3)}


def is_usage(key: dict[str, Any]) -> bool:
    return bool(key.get(USAGE))


def stored_usage(key: dict[str, Any], chunk: int, sub: int) -> dict[str, Any]:
    """A part file's usage record as ``usage.rec`` keeps it: which chunk's file, of which submission."""
    return {"chunk": chunk, "sub": sub, "runner": key.get("runner", chunk), "cpu": key.get("cpu", 0.0),
            "rss": key.get("rss", 0), "wall": key.get("wall", 0.0)}


@dataclass(frozen=True)
class WorkerUsage:
    """An element's own measure: its latest record (the numbers only grow while the process runs)."""

    cpu: float
    peak_memory: int
    wall: float


@dataclass(frozen=True)
class Loss:
    """A job that ended without its chunk's result, and why (the retry policy's class and its detail)."""

    chunk: int
    element: str | None
    failure: str
    detail: str


@dataclass
class BatchUsage:
    """One batch's side of the report: resources asked per element, the workers' measures, the losses."""

    asked: dict[str, "Resources"] = field(default_factory=dict)  # element -> its submission's resources
    job_ids: list[str] = field(default_factory=list)  # each submission's job id, in order
    measured: dict[str, WorkerUsage] = field(default_factory=dict)  # element -> its own measure
    losses: list[Loss] = field(default_factory=list)
    attempts: int = 0  # chunk submissions
    resubmissions: int = 0  # of those, after a lost job


def read_batch_usage(journal: Path, usage: Path) -> BatchUsage:
    """The batch's journal and ``usage.rec`` (see :class:`BatchUsage`)."""
    from poolparty.resources import Resources
    from poolparty.store.journal import LOST, SUBMITTED, events, replay

    histories = replay(journal).chunks.values()
    out = BatchUsage(attempts=sum(len(h.attempts) for h in histories),
                     resubmissions=sum(h.resubmissions for h in histories))
    element_of: dict[tuple[int, int], str] = {}  # (submission, chunk) -> element
    for ev, k, _ in events(journal):
        if ev == SUBMITTED:
            res = Resources.from_json(k["res"])
            out.job_ids.append(k["job"])
            for chunk, element in zip(k["chunks"], k["elements"]):
                out.asked[element] = res
                element_of[(k["sub"], chunk)] = element
        elif ev == LOST:
            out.losses.append(Loss(k["chunk"], k.get("element"), k.get("failure", "?"), k.get("why", "")))
    for rec in records.read_records(usage, resync=True):
        k = rec.key
        element = element_of.get((k.get("sub", -1), k.get("runner", -1)))
        if element is None:
            continue
        seen = out.measured.get(element)
        if seen is None or k.get("wall", 0.0) >= seen.wall:
            out.measured[element] = WorkerUsage(float(k.get("cpu", 0.0)), int(k.get("rss", 0)),
                                                float(k.get("wall", 0.0)))
    return out
