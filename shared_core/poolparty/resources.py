"""Portable resource requests, translated per queue by the adapters.

Names follow what SLURM and Snakemake users write; an unknown name fails with the valid ones.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from poolparty.errors import ConfigurationError, UnknownResourceError
from poolparty.units import format_size

_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
                 "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4,
                 "tb": 1024**4, "tib": 1024**4}
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_memory(value: int | str | None) -> int | None:
    """Bytes from ``4GB``, ``500M``, ``2GiB`` or an int (bytes). Binary units, as schedulers use."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"memory={value!r} is not a size; write e.g. memory='4GB'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"memory={value!r} must be a positive number of bytes; write e.g. memory='4GB'")
        number = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _MEMORY_UNITS:
            raise ConfigurationError(f"memory={value!r} is not a size; write e.g. '4GB', '500MB' or bytes as int")
        number = float(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()]
    if number < 1:  # int() would make it 0 bytes
        raise ConfigurationError(
            f"memory={value!r} is less than one byte (a number without a unit counts bytes); "
            "write the unit, e.g. memory='512MB' or memory='4GB'")
    return int(number)


def parse_duration(value: int | float | str | None) -> int | None:
    """Seconds from ``90``, ``'1:30:00'``, ``'2-00:00:00'``, ``'90min'``, ``'2h'``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"walltime={value!r} is not a duration; write e.g. walltime='1:00:00'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ConfigurationError(f"walltime={value!r} must be a positive, finite number of seconds; "
                                     "write e.g. walltime=3600 or walltime='1:00:00'")
        return int(math.ceil(value))
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]+)", text.lower())
    if m and m.group(2) in _DURATION_UNITS:
        return int(math.ceil(float(m.group(1)) * _DURATION_UNITS[m.group(2)]))
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ConfigurationError(
            f"walltime={value!r} is not a duration; write seconds, 'HH:MM:SS', 'D-HH:MM:SS' or '2h'")
    days = int(m.group(1) or 0)
    parts = [int(p) for p in m.group(2, 3, 4) if p is not None]
    if m.group(1) is not None:  # D-HH[:MM[:SS]]
        while len(parts) < 3:
            parts.append(0)
        h, mi, s = parts
    elif len(parts) == 3:
        h, mi, s = parts
    elif len(parts) == 2:
        h, mi, s = 0, parts[0], parts[1]
    else:
        h, mi, s = 0, 0, parts[0]
    seconds = days * 86400 + h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ConfigurationError(f"walltime={value!r} must be positive")
    return seconds


@dataclass(frozen=True)
class Resources:
    """What one array element (one chunk) asks for. ``None`` means the queue's default."""

    cpus: int | None = None
    memory: int | None = None  # bytes, for the whole element
    walltime: int | None = None  # seconds
    partition: str | None = None  # SLURM partition, SGE queue
    account: str | None = None
    qos: str | None = None
    gpus: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)  # raw scheduler flags, one argv item each

    def __post_init__(self) -> None:
        if self.cpus is not None and (not isinstance(self.cpus, int) or isinstance(self.cpus, bool) or self.cpus < 1):
            raise ConfigurationError(f"cpus={self.cpus!r} must be a positive integer, e.g. cpus=4")
        if self.gpus is not None and (not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 0):
            raise ConfigurationError(f"gpus={self.gpus!r} must be a non-negative integer")
        for name in ("partition", "account", "qos"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v or v.startswith("-")):
                raise ConfigurationError(f"{name}={v!r} must be a plain name")
        if not all(isinstance(x, str) for x in self.extra):
            raise ConfigurationError("extra must be a list of strings, one scheduler argument each")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: "Resources | None" = None) -> "Resources":
        """Build from user keywords (``memory='4GB'``, ``walltime='1:00:00'``), over ``base``."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UnknownResourceError(
                f"unknown resource name(s) {', '.join(map(repr, unknown))}; "
                f"valid names are: {', '.join(cls.names())}")
        parsed = dict(values)
        if "memory" in parsed:
            parsed["memory"] = parse_memory(parsed["memory"])
        if "walltime" in parsed:
            parsed["walltime"] = parse_duration(parsed["walltime"])
        if "extra" in parsed:
            extra = parsed["extra"]
            if extra is None:
                parsed["extra"] = ()
            elif isinstance(extra, str):
                raise ConfigurationError(
                    "extra must be a list of arguments, e.g. extra=['--constraint=skylake'], not one string")
            else:
                parsed["extra"] = tuple(extra)
        parsed = {k: v for k, v in parsed.items() if v is not None or k == "extra"}
        return dataclasses.replace(base or cls(), **parsed)

    def summary(self) -> str:
        """``cpus=64, memory=100.0 GiB, walltime=1:00:00``: what was asked for, for messages."""
        parts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or v == ():
                continue
            if f.name == "memory":
                v = format_size(v)
            elif f.name == "walltime":
                v = format_hms(v)
            elif f.name == "extra":
                v = list(v)
            else:
                v = repr(v) if isinstance(v, str) else v
            parts.append(f"{f.name}={v}")
        return ", ".join(parts) or "the scheduler's defaults"

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra"] = list(self.extra)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Resources":
        d = dict(d)
        d["extra"] = tuple(d.get("extra") or ())
        return cls(**d)


def format_hms(seconds: int) -> str:
    """``H:MM:SS`` (hours may exceed 24), understood by SLURM and SGE."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"
