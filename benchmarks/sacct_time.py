"""sacct's time fields as seconds, for the benchmarks' idle/CPU accounting."""
from __future__ import annotations


def slurm_seconds(text: str) -> float:
    """sacct TotalCPU / Elapsed: ``[D-][HH:]MM:SS[.mmm]`` -> seconds (empty -> 0)."""
    text = text.strip()
    if not text:
        return 0.0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    h, m, s = parts
    return days * 86400 + h * 3600 + m * 60 + s
