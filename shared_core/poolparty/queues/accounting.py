"""What a scheduler's accounting says one job used and was given, in one vocabulary for every adapter
(each renders its own accounting command and parses its output into :class:`JobUsage`), and the unit
readers those parsers share. Standard library only."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


@dataclass(frozen=True)
class JobUsage:
    """One job (array element) as accounted: seconds, bytes and cores; None where the source is silent."""

    element: str  # the element id, as the status query and the journal spell it
    state: str  # the scheduler's own word for how it ended (COMPLETED, OUT_OF_MEMORY, failed 37 ...)
    elapsed: float  # wall seconds it ran
    cpu_time: float  # CPU seconds used (user + system)
    cpus: int | None = None  # cores allocated
    peak_memory: int | None = None  # bytes, the highest resident (or, on SGE, virtual) size seen
    requested_memory: int | None = None  # bytes for the whole job
    time_limit: float | None = None  # seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Accounting:
    """The answer of one accounting call: the jobs it knew, and why there is none (``unavailable``)."""

    jobs: dict[str, JobUsage]
    source: str  # the command asked (sacct, qacct ...), or "worker" where jobs measure themselves
    unavailable: str | None = None  # e.g. "Slurm accounting storage is disabled"


def size_bytes(text: str, default_unit: str = "") -> int | None:
    """``1076K``, ``2.5G``, ``1024M``, ``1097728`` (bytes, as ``sacct --noconvert`` writes MaxRSS),
    ``4.578KB``, ``12kb`` -> bytes (1024-based); None for an empty or unreadable field."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)(?:i?B)?\s*", text or "", re.IGNORECASE)
    if not m:
        return None
    unit = m.group(2).upper() or default_unit
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def clock_seconds(text: str) -> float | None:
    """``[D-]HH:MM:SS[.mmm]``, ``MM:SS.mmm`` (sacct's TotalCPU), ``HH:MM:SS`` (PBS) -> seconds."""
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?(?::(\d+(?:\.\d+)?))?\s*", text or "")
    if not m:
        return None
    days = int(m.group(1) or 0)
    parts = [float(p) for p in m.groups()[1:] if p is not None]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    if len(parts) == 1 and m.group(1) is None:  # a bare number: seconds
        return parts[0]
    return days * 86400 + seconds
