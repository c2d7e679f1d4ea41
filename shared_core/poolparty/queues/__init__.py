"""Queue adapters by name: ``local`` (embedded default), ``slurm``, ``sge``."""
from __future__ import annotations

from poolparty.errors import ConfigurationError
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.base import JobState, JobStatus, QueueAdapter

QUEUE_NAMES = ("local", "slurm", "sge")


def make_queue(queue: "str | QueueAdapter", cli: SchedulerCLI) -> QueueAdapter:
    if isinstance(queue, QueueAdapter):
        return queue
    if queue == "local":
        from poolparty.queues.local import LocalQueue

        return LocalQueue()
    if queue == "slurm":
        from poolparty.queues.slurm import SlurmQueue

        return SlurmQueue(cli)
    if queue == "sge":
        from poolparty.queues.sge import SgeQueue

        return SgeQueue(cli)
    raise ConfigurationError(f"queue={queue!r} is unknown; choose one of {', '.join(QUEUE_NAMES)}")


__all__ = ["JobState", "JobStatus", "QueueAdapter", "make_queue", "QUEUE_NAMES"]
