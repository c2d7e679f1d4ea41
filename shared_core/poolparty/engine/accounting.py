"""The efficiency report of some batches of a run: what the journal and the workers recorded (read
through :mod:`poolparty.store.usage`), ONE accounting call to the scheduler for all of their jobs
(:meth:`QueueAdapter.account <poolparty.queues.base.QueueAdapter.account>`), and the pure arithmetic of
:mod:`poolparty.efficiency`. Used when a map ends (verbose, or under a progress line) and by
``poolparty report``."""
from __future__ import annotations

from typing import Iterable

from poolparty.efficiency import EfficiencyReport, build
from poolparty.queues.accounting import Accounting
from poolparty.queues.base import QueueAdapter
from poolparty.queues.cli import SchedulerCLI
from poolparty.resources import Resources
from poolparty.store.layout import BatchPaths
from poolparty.store.usage import WorkerUsage, read_batch_usage


def efficiency_report(batches: Iterable[BatchPaths], queue: type[QueueAdapter], name: str,
                      cli: SchedulerCLI) -> EfficiencyReport:
    """The report of ``batches`` (of the run whose jobs are named ``name``), asking ``queue``'s accounting
    once; no call at all when nothing was submitted."""
    asked: dict[str, Resources] = {}
    measured: dict[str, WorkerUsage] = {}
    job_ids: dict[str, None] = {}  # each submission once, in order
    losses: list[str] = []
    attempts = resubmissions = 0
    for b in batches:
        usage = read_batch_usage(b.journal, b.usage)
        asked.update(usage.asked)
        measured.update(usage.measured)
        job_ids.update(dict.fromkeys(usage.job_ids))
        losses += [loss.failure for loss in usage.losses]
        attempts += usage.attempts
        resubmissions += usage.resubmissions
    accounting = queue.account(name, list(job_ids), cli) if job_ids else Accounting({}, "worker")
    return build(asked, accounting, measured, losses, attempts, resubmissions)
