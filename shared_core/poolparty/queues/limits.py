"""What a scheduler allows, as ``poolparty doctor`` shows it: the report's shape and the parsing both
adapters share. Each adapter reads its own limits (``QueueAdapter.limits_report``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from poolparty.errors import ConfigurationError, SchedulerCommandError
from poolparty.queues.cli import SchedulerCLI

if TYPE_CHECKING:
    from poolparty.queues.base import QueueAdapter


@dataclass
class SchedulerReport:
    kind: str
    reachable: bool
    problem: str | None = None  # why it is not usable
    limits: dict[str, str] = field(default_factory=dict)
    partitions: list[dict[str, str]] = field(default_factory=list)  # SLURM partitions, SGE queues
    user_limits: list[dict[str, str]] = field(default_factory=list)
    user_limits_note: str | None = None  # why they could not be read, or that there are none
    #: what the scheduler calls the rows of :attr:`partitions`
    partition_word: ClassVar[str] = "queue"
    #: per kind of :attr:`user_limits` row, the columns that name it; the other columns are its limits
    name_columns: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: kinds whose names are shown as ``column=value`` (an association is an account AND a partition)
    labelled_kinds: ClassVar[tuple[str, ...]] = ()
    #: columns of a row that are not limits
    hidden_columns: ClassVar[tuple[str, ...]] = ()

    def notes(self) -> list[str]:
        """Lines the scheduler's limits imply for poolparty (how it splits arrays, ...)."""
        return []

    def limit_text(self, row: Mapping[str, str]) -> str:
        """One :attr:`user_limits` row as doctor shows it: its kind and name, then the limits it sets."""
        row = dict(row)
        kind = row.pop("kind")
        names = [(f"{k.lower()}=" if kind in self.labelled_kinds else "") + row.pop(k)
                 for k in self.name_columns.get(kind, ()) if k in row]
        limits = ", ".join(f"{k}={v}" for k, v in row.items() if k not in self.hidden_columns) or "no limit set"
        return f"{kind} {' '.join(names)}: {limits}"


def doctor_cli(timeout: float) -> SchedulerCLI:
    """Few, quick retries: doctor reports a scheduler that does not answer rather than waiting for it."""
    return SchedulerCLI(timeout=timeout, attempts=2, backoff_base=0.3)


def key_values(text: str, sep: str) -> dict[str, str]:
    """``key = value`` lines (``sep="="``, scontrol) or ``key   value`` lines (``sep=" "``, qconf)."""
    out = {}
    for line in text.splitlines():
        if sep == "=" and "=" in line:
            k, v = line.split("=", 1)
        elif sep == " " and line.strip() and not line.startswith(" "):
            k, _, v = line.partition(" ")
        else:
            continue
        out[k.strip()] = v.strip()
    return out


def table_row(names: tuple[str, ...], line: str) -> dict[str, str]:
    """One ``|``-separated line (``sacctmgr -P``) -> {column: value} for the non-empty columns."""
    return {n: v for n, v in zip(names, line.split("|")) if v}


def scheduler_config(adapter: "type[QueueAdapter]", report: SchedulerReport, argv: Sequence[str], sep: str,
                     cli: SchedulerCLI) -> dict[str, str] | None:
    """The scheduler's configuration (``scontrol show config``, ``qconf -sconf``); None, with ``report``
    marked unreachable and why, when a command is missing or the scheduler does not answer."""
    text = scheduler_answer(adapter, report, argv, cli)
    return None if text is None else key_values(text, sep)


def scheduler_answer(adapter: "type[QueueAdapter]", report: SchedulerReport, argv: Sequence[str],
                     cli: SchedulerCLI) -> str | None:
    """What ``argv`` printed; None, with ``report`` marked unreachable and why, when a command is missing
    or the scheduler does not answer."""
    try:
        adapter.require_commands(cli)
        return cli.run(argv).stdout
    except (ConfigurationError, SchedulerCommandError) as e:
        report.reachable, report.problem = False, first_line(e)
        return None


def first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def report(kind: str, timeout: float = 15.0) -> SchedulerReport | None:
    """The limits report of the queue named ``kind``; None for a queue without a scheduler."""
    from poolparty.queues import queue_class

    return queue_class(kind).limits_report(timeout)


def as_json(r: SchedulerReport) -> dict[str, Any]:
    return asdict(r)
