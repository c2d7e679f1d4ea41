"""A task's ``MemoryError`` under an address-space limit the scheduler set: the job's memory, not the task.

SGE enforces ``h_vmem`` as an rlimit on the job's address space (``RLIMIT_AS``), and so do PBS and LSF
sites that limit memory with rlimits: a task over it is not killed, its allocation fails and Python raises
``MemoryError`` inside the task. Under such a limit the worker stops the chunk and records it as out of
memory, so the driver resubmits it with more, as for SLURM's ``OUT_OF_MEMORY``.

Without a finite limit a ``MemoryError`` means the node itself is out of memory, or the task asked for
more than any node has (``bytearray(10**15)``), or the task raised it itself: more memory from the
scheduler would not help, so it stays the task's own exception.
"""
from __future__ import annotations

import resource


class MemoryLimitReached(Exception):
    """A task of the chunk raised ``MemoryError`` under the job's address-space limit: the chunk stops."""

    def __init__(self, task: int, limit: int):
        super().__init__(f"task {task} raised MemoryError under the job's address-space limit "
                         f"(RLIMIT_AS, SGE's h_vmem) of {limit // 1024**2} MiB")
        self.task, self.limit = task, limit


def address_space_limit() -> int | None:
    """This process's soft ``RLIMIT_AS`` in bytes; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def is_over_memory_limit(error: BaseException, limit: int | None) -> bool:
    """Whether a task's ``error`` says the job's memory limit was reached: a ``MemoryError`` (or a
    subclass) while the address space is limited (``limit``: :func:`address_space_limit`)."""
    return isinstance(error, MemoryError) and limit is not None
