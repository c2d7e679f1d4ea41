"""Snakemake jobs through the core's batching window: the jobs of one scheduling round that share
resources leave as one engine batch (one array); each is registered with Snakemake under an external
id ``<pool>:<batch>.<task>``, and every result wakes the status loop."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

if TYPE_CHECKING:
    from poolparty.api.batching import Placement


class RoundSubmission:
    """The :class:`poolparty.api.batching.OutcomeSink` of the plugin: an item is a Snakemake job."""

    def __init__(self, pool_name: str, register: Callable[[SubmittedJobInfo], None],
                 report_error: Callable[[SubmittedJobInfo, str], None], wake: threading.Event):
        self.pool_name = pool_name
        self.register = register
        self.report_error = report_error
        self.wake = wake

    def submitted(self, placed: Sequence[tuple[Any, "Placement"]]) -> None:
        wake = self.wake
        placed[0][1].handle.add_done_callback(lambda _: wake.set())  # one batch: one handle
        for job, where in placed:
            number = Path(where.handle.batch_dir or "0").name
            self.register(SubmittedJobInfo(job, external_jobid=f"{self.pool_name}:{number}.{where.task}",
                                           aux={"handle": where.handle, "task": where.task}))

    def arrived(self, job: Any, where: "Placement") -> None:
        self.wake.set()

    def failed(self, job: Any, where: "Placement", error: BaseException) -> None:
        self.wake.set()

    def refused(self, job: Any, error: BaseException) -> None:
        self.report_error(SubmittedJobInfo(job), f"poolparty: submission failed: {error}. ")
