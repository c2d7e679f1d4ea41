"""The ``max_result_size`` limit: a task whose pickled result is larger fails with a clear error on the
node instead of sending a huge pickle through the shared filesystem.

The driver records the limit in the run's ``run.json``; the worker reads it from there
(:func:`poolparty.store.run_info.read_result_limit`).
"""
from __future__ import annotations

from poolparty.errors import PoolPartyError


class ResultTooLargeError(PoolPartyError):
    """A task's return value pickles to more bytes than ``max_result_size`` allows."""

    def __init__(self, size: int, limit: int, type_name: str = "?"):
        self.size = size
        self.limit = limit
        self.type_name = type_name
        super().__init__(
            f"the task's return value ({type_name}) is {format_size(size)} pickled, above "
            f"max_result_size={format_size(limit)}: write large data to a file on the shared filesystem "
            "and return its path, or raise max_result_size")

    def __reduce__(self):
        return (ResultTooLargeError, (self.size, self.limit, self.type_name))


def format_size(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
