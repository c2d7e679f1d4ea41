"""Parsers and formatters for SLURM/SGE option values (times, memory, id ranges, timestamps)."""
from __future__ import annotations

import re
import time

_SLURM_TIME_FORMATS = [
    (re.compile(r"^(\d+)$"), ("m",)),
    (re.compile(r"^(\d+):(\d+)$"), ("m", "s")),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), ("h", "m", "s")),
    (re.compile(r"^(\d+)-(\d+)$"), ("d", "h")),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), ("d", "h", "m")),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"), ("d", "h", "m", "s")),
]
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_slurm_time(text: str) -> float | None:
    """`--time` value in seconds; None for UNLIMITED/INFINITE/0. Raises ValueError."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "-1"):
        return None
    for pattern, units in _SLURM_TIME_FORMATS:
        match = pattern.match(text)
        if match:
            total = sum(int(v) * _UNIT_SECONDS[u] for v, u in zip(match.groups(), units))
            return float(total) if total > 0 else None
    raise ValueError(text)


def parse_sge_time(text: str) -> float:
    """`h_rt` value (`H:M:S` or seconds) in seconds. Raises ValueError."""
    parts = text.strip().split(":")
    if len(parts) == 1:
        return float(int(parts[0]))
    if len(parts) != 3:
        raise ValueError(text)
    h, m, s = (int(p) if p else 0 for p in parts)
    return float(h * 3600 + m * 60 + s)


def parse_slurm_mem_mb(text: str) -> int:
    """`--mem` value in MB (`100M`, `2G`, `1024` = MB, `512K`, `1T`). Raises ValueError."""
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", text.strip().upper())
    if not match:
        raise ValueError(text)
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)]
    return max(0, int(float(match.group(1)) * factor))


def parse_sge_mem_bytes(text: str) -> int:
    """SGE memory value in bytes (k/m/g = 1000-based, K/M/G = 1024-based). Raises ValueError."""
    match = re.match(r"^(\d+(?:\.\d+)?)([kKmMgGtT]?)$", text.strip())
    if not match:
        raise ValueError(text)
    factors = {"": 1, "k": 1e3, "K": 1024, "m": 1e6, "M": 1024**2, "g": 1e9, "G": 1024**3,
               "t": 1e12, "T": 1024**4}
    return int(float(match.group(1)) * factors[match.group(2)])


def parse_slurm_array(spec: str) -> tuple[list[int], int | None]:
    """`--array` spec (`0-9`, `0-9%2`, `1,3,5-7%4`, `0-15:4`) → (sorted ids, throttle)."""
    body, _, throttle_text = spec.partition("%")
    throttle = int(throttle_text) if throttle_text else None
    if throttle_text and not throttle_text.isdigit():
        raise ValueError(spec)
    ids: set[int] = set()
    for item in body.split(","):
        match = re.match(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", item.strip())
        if not match:
            raise ValueError(spec)
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        step = int(match.group(3)) if match.group(3) else 1
        if last < first or step < 1:
            raise ValueError(spec)
        ids.update(range(first, last + 1, step))
    return sorted(ids), throttle


def parse_sge_range(spec: str) -> tuple[int, int, int]:
    """`-t n[-m[:s]]` → (first, last, step). Raises ValueError."""
    match = re.match(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", spec.strip())
    if not match:
        raise ValueError(spec)
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    step = int(match.group(3)) if match.group(3) else 1
    if first < 1 or last < first or step < 1:
        raise ValueError(spec)
    last = first + (last - first) // step * step
    return first, last, step


def slurm_id_ranges(ids: list[int]) -> str:
    """Compress ids into SLURM bitmap notation: `1,3,5-7`."""
    parts: list[str] = []
    for first, last in _consecutive_runs(sorted(ids), 1):
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def sge_id_ranges(ids: list[int], step: int) -> str:
    """Compress ids into SGE range-list notation: `3`, `3,4`, `3-8:1`."""
    parts: list[str] = []
    for first, last in _consecutive_runs(sorted(ids), step):
        if first == last:
            parts.append(str(first))
        elif first + step == last:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}:{step}")
    return ",".join(parts)


def _consecutive_runs(ids: list[int], step: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in ids:
        if runs and value == runs[-1][1] + step:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def slurm_duration(seconds: float | None) -> str:
    """squeue `%M`/`%l` style: `M:SS`, `H:MM:SS`, `D-HH:MM:SS`; None → `UNLIMITED`."""
    if seconds is None:
        return "UNLIMITED"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def slurm_clock(seconds: float | None) -> str:
    """sacct/scontrol style: `HH:MM:SS` or `D-HH:MM:SS`; None → `UNLIMITED`."""
    if seconds is None:
        return "UNLIMITED"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def iso_time(t: float | None) -> str:
    """`2026-11-21T05:14:45` (local time); None → `Unknown`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else "Unknown"


def sge_table_time(t: float) -> str:
    """qstat table time: `11/21/2026 05:16:19`."""
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(t))


def ctime(t: float | None) -> str:
    """qacct time: `Sat Nov 21 05:16:19 2026`; None → `-/-`."""
    return time.ctime(t) if t else "-/-"
