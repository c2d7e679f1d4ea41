"""The impossible-resource check: before the first submission of a resource request, the scheduler
itself is asked whether such a job could ever start (``sbatch --test-only``, ``qsub -w v``); nothing
is queued by the question. A "no" becomes :class:`ImpossibleResourceError` with the scheduler's words
and the limits it reports; a scheduler that cannot answer never blocks the submission."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from poolparty.errors import ImpossibleResourceError, SchedulerCommandError
from poolparty.resources import Resources
from poolparty.queues.cli import SchedulerCLI

log = logging.getLogger("poolparty")


class ResourceVerifier:
    """Remembers which requests the scheduler accepted, so each distinct one is asked once."""

    def __init__(self, cli: SchedulerCLI, queue: str):
        self.cli = cli
        self.queue = queue
        self._accepted: set[Resources] = set()

    def check(self, resources: Resources, argv: Sequence[str], limits: Callable[[], str]) -> None:
        """Run the scheduler's dry-run ``argv``; raise if it rejects the request."""
        if resources == Resources() or resources in self._accepted:
            return  # the scheduler's defaults always fit
        try:
            self.cli.run(argv, retry_on_timeout=False)
        except SchedulerCommandError as e:
            if e.returncode is None or e.returncode == 127:
                log.warning("poolparty: could not ask %s whether %s can run (%s); submitting anyway",
                            self.queue, resources.summary(), str(e).splitlines()[0])
                return
            said = " ".join(line.strip() for line in e.stderr.strip().splitlines()
                            if line.strip() and line.strip() != "Exiting.").rstrip(".")
            try:
                known = limits()
            except SchedulerCommandError:
                known = ""
            raise ImpossibleResourceError(
                f"{self.queue.upper()} says no job with these resources can run here ({resources.summary()}): "
                f"{said or f'exit code {e.returncode}'}. Nothing was submitted."
                + (f"\n  what the scheduler offers: {known}" if known else "")
                + "\n  Fix: ask for at most what one node of the partition/queue has, or choose another "
                  "partition/queue (`poolparty doctor` lists them and their limits).") from None
        self._accepted.add(resources)
