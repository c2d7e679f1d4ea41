"""The ``max_result_size`` limit: a task whose pickled result is larger fails with a clear error on the
node instead of sending a huge pickle through the shared filesystem.

The driver records the limit in the run's ``run.json``; the worker reads it from there
(:func:`poolparty.store.run_info.read_result_limit`).
"""
from __future__ import annotations

from poolparty.errors import PoolPartyError
from poolparty.units import format_size


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
