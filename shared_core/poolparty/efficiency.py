"""The efficiency report of a map: core-seconds allocated against CPU-seconds used, peak memory against
memory asked, the longest job against the walltime asked, resubmissions and why, and a one-line
suggestion for the next run. Pure: built from what the scheduler's accounting and the workers' own
measures said (:class:`~poolparty.queues.accounting.JobUsage`) and what the journal recorded."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from poolparty.queues.accounting import Accounting, JobUsage
from poolparty.resources import Resources, format_hms
from poolparty.store.usage import WorkerUsage
from poolparty.units import format_size

GIB, MIB = 1024**3, 1024**2
#: headroom a suggestion keeps above what was seen: memory peaks vary between inputs, run times more
MEMORY_HEADROOM, WALLTIME_HEADROOM, CPU_HEADROOM = 1.2, 1.5, 1.1
#: an accounting's word for a job it has not closed yet (JobState values)
STILL_ACCOUNTING = frozenset({"pending", "running", "requeued", "suspended", "held"})
#: a request is called oversized (and a smaller one suggested) when the suggestion is below this share of it
OVERSIZED = 0.75


@dataclass
class EfficiencyReport:
    jobs: list[JobUsage]  # the jobs that ran (an element cancelled before it started is not one)
    source: str  # the accounting command asked, or "worker" (the workers' own measure)
    unavailable: str | None  # why the scheduler's accounting said nothing (then: the workers' measure)
    from_workers: int  # jobs whose figures came from their worker's own measure
    asked: Resources  # the largest request of any submission (cpus, memory, walltime)
    attempts: int
    resubmissions: int
    reasons: dict[str, int]  # why jobs were lost: failure class -> count
    suggestions: list[str] = field(default_factory=list)

    @property
    def core_seconds(self) -> float:
        return sum((j.cpus or 1) * j.elapsed for j in self.jobs)

    @property
    def cpu_seconds(self) -> float:
        return sum(j.cpu_time for j in self.jobs)

    @property
    def peak_memory(self) -> int | None:
        return max((j.peak_memory for j in self.jobs if j.peak_memory), default=None)

    @property
    def requested_memory(self) -> int | None:
        return max((j.requested_memory for j in self.jobs if j.requested_memory), default=self.asked.memory)

    @property
    def longest(self) -> float:
        return max((j.elapsed for j in self.jobs), default=0.0)

    @property
    def time_limit(self) -> float | None:
        return max((j.time_limit for j in self.jobs if j.time_limit), default=self.asked.walltime)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "accounting_unavailable": self.unavailable, "jobs": len(self.jobs),
                "jobs_measured_by_worker": self.from_workers, "core_seconds": round(self.core_seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3), "cpu_efficiency": _share(self.cpu_seconds, self.core_seconds),
                "peak_memory": self.peak_memory, "requested_memory": self.requested_memory,
                "longest_job_seconds": self.longest, "time_limit_seconds": self.time_limit,
                "asked": {"cpus": self.asked.cpus, "memory": self.asked.memory, "walltime": self.asked.walltime},
                "attempts": self.attempts, "resubmissions": self.resubmissions, "resubmission_reasons": self.reasons,
                "suggestion": self.suggestion, "per_job": [j.to_json() for j in self.jobs]}

    @property
    def suggestion(self) -> str:
        """One line: the requests that would have done, or that nothing is to change."""
        if self.suggestions:
            return "; ".join(self.suggestions)
        if not self.jobs:
            return "no job ran long enough to be measured"
        return "the requests fit what the jobs used"

    def lines(self) -> list[str]:
        """The report as text, one figure per line."""
        where = f"accounting: {self.source}" if self.source != "worker" else "measured by the workers themselves"
        if self.unavailable:
            where = f"{self.source} unavailable ({self.unavailable}): measured by the workers themselves"
        elif self.from_workers and self.source != "worker":
            where += f"; {self.from_workers} job(s) not in it yet, measured by their workers"
        out = [f"efficiency of {len(self.jobs)} job(s) ({where})"]
        out.append(f"  CPU: {self.cpu_seconds:.1f} of {self.core_seconds:.1f} core-seconds allocated used"
                   f"{_percent(self.cpu_seconds, self.core_seconds)}"
                   + (f"; cpus asked {self.asked.cpus}" if self.asked.cpus else ""))
        peak, asked = self.peak_memory, self.requested_memory
        out.append(f"  memory: peak {format_size(peak) if peak else '?'}"
                   + (f" of {format_size(asked)} per job{_percent(peak or 0, asked)}" if asked else ", none asked"))
        limit = self.time_limit
        out.append(f"  walltime: longest job {format_hms(int(self.longest))}"
                   + (f" of {format_hms(int(limit))}{_percent(self.longest, limit)}" if limit else ", no limit"))
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        out.append(f"  resubmitted: {self.resubmissions} of {self.attempts} job(s)" + (f" ({why})" if why else ""))
        out.append(f"  suggestion: {self.suggestion}")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def summary(self) -> list[str]:
        """The report's figures in a few words each, most telling first: the progress line's last line."""
        parts = [f"CPU {_share(self.cpu_seconds, self.core_seconds) or 0:.0%} of {self.core_seconds:.0f} core-s"]
        if self.peak_memory:
            asked = self.requested_memory
            parts.append(f"peak {format_size(self.peak_memory)}" + (f" of {format_size(asked)}" if asked else ""))
        if self.resubmissions:
            parts.append(f"{self.resubmissions} resubmitted")
        return parts + self.suggestions


def build(asked: Mapping[str, Resources], accounting: Accounting, measured: Mapping[str, WorkerUsage],
          losses: Iterable[str], attempts: int, resubmissions: int) -> EfficiencyReport:
    """The report of the elements in ``asked`` (each with its submission's resources): the accounting's
    figures where it has them, else the worker's own measure; ``losses``: the failure class of each job
    lost (from the journal)."""
    jobs: list[JobUsage] = []
    from_workers = 0
    for element, res in asked.items():
        usage = accounting.jobs.get(element)
        mine = measured.get(element)
        if usage is not None and mine is not None and usage.state in STILL_ACCOUNTING:
            usage = None  # ended for us, not yet for the accounting (right at the map's end): its figures grow
        if usage is None and mine is not None:
            usage = JobUsage(element, "measured", mine.wall, mine.cpu, res.cpus or 1, mine.peak_memory or None,
                             res.memory, res.walltime)
            from_workers += 1
        elif usage is not None and mine is not None:
            usage = completed(usage, mine)
        if usage is not None and (usage.elapsed > 0 or usage.cpu_time > 0):
            jobs.append(usage)
    largest = Resources(cpus=_largest(r.cpus for r in asked.values()),
                        memory=_largest(r.memory for r in asked.values()),
                        walltime=_largest(r.walltime for r in asked.values()))
    report = EfficiencyReport(jobs, accounting.source, accounting.unavailable, from_workers, largest, attempts,
                              resubmissions, dict(Counter(losses)))
    report.suggestions = suggestions(report)
    return report


def completed(usage: JobUsage, mine: WorkerUsage) -> JobUsage:
    """The accounting's figures, with what the worker measured where the accounting has none (a
    scheduler that records no CPU time or run time), and the larger peak memory: the scheduler samples it
    (sacct's MaxRSS every JobAcctGatherFrequency seconds) and misses a short peak, while the worker's
    ru_maxrss is exact for its process."""
    return replace(usage, elapsed=usage.elapsed or mine.wall, cpu_time=usage.cpu_time or mine.cpu,
                   peak_memory=max(usage.peak_memory or 0, mine.peak_memory) or None)


def suggestions(report: EfficiencyReport) -> list[str]:
    """What would have been enough, for each request the user made that the jobs used much less of. Not
    for memory when a job ran out of it, nor walltime when one ran out of time: those were too small."""
    out = []
    asked, lost = report.asked, set(report.reasons)
    peak = report.peak_memory
    if asked.memory and peak and "out of memory" not in lost:
        enough = round_memory(peak * MEMORY_HEADROOM)
        if enough < OVERSIZED * asked.memory:
            out.append(f"memory='{memory_text(enough)}' would have covered every chunk (peak "
                       f"{format_size(peak)}); you asked for {memory_text(asked.memory)}")
    if asked.walltime and report.jobs and "walltime exceeded" not in lost:
        enough = round_walltime(report.longest * WALLTIME_HEADROOM)
        if enough < OVERSIZED * asked.walltime:
            out.append(f"walltime='{format_hms(enough)}' would have covered every job (longest "
                       f"{format_hms(int(report.longest))}); you asked for {format_hms(asked.walltime)}")
    busiest = max((j.cpu_time / j.elapsed for j in report.jobs if j.elapsed > 0), default=None)
    if asked.cpus and asked.cpus > 1 and busiest is not None:
        enough = max(1, math.ceil(busiest * CPU_HEADROOM))
        if enough < asked.cpus:
            out.append(f"cpus={enough} would have been enough (at most {busiest:.1f} cores busy); "
                       f"you asked for {asked.cpus}")
    return out


def round_memory(n: float) -> int:
    """Up to a size people write: tenths of a GiB from 1 GiB, tens of MiB from 100 MiB, else MiB."""
    if n >= GIB:
        return math.ceil(n / GIB * 10) * GIB // 10
    if n >= 100 * MIB:
        return math.ceil(n / (10 * MIB)) * 10 * MIB
    return max(1, math.ceil(n / MIB)) * MIB


def memory_text(n: int) -> str:
    """``1610612736`` -> ``1.5GB``; ``62914560`` -> ``60MB`` (binary units, as ``memory=`` reads them)."""
    if n >= GIB:
        return f"{n / GIB:.1f}".rstrip("0").rstrip(".") + "GB"
    return f"{math.ceil(n / MIB)}MB"


def round_walltime(seconds: float) -> int:
    """Up to whole minutes (at least one)."""
    return max(60, math.ceil(seconds / 60) * 60)


def _largest(values: Iterable[int | None]) -> int | None:
    return max((v for v in values if v), default=None)


def _share(part: float, whole: float | None) -> float | None:
    return part / whole if whole else None


def _percent(part: float, whole: float | None) -> str:
    share = _share(part, whole)
    return f" ({share:.0%})" if share is not None else ""

