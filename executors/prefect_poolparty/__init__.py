"""A Prefect 3 task runner that sends task runs to SLURM, SGE or local processes through poolparty.

    from prefect import flow
    from prefect_poolparty import PoolPartyTaskRunner

    @flow(task_runner=PoolPartyTaskRunner(queue="slurm", max_running=50, cpus=2, memory="4GB"))
    def pipeline(xs): ...

See docs/prefect.md. The job side (``prefect_poolparty.job``) imports only what it needs.
"""
from __future__ import annotations

from typing import Any

from poolparty.engine.by_value import importable_on_nodes

# The nodes import this package from the shared environment: its functions (the job entry point)
# must travel by reference even when it is installed editable from a source tree.
importable_on_nodes("prefect_poolparty")

__all__ = ["PoolPartyTaskRunner"]


def __getattr__(name: str) -> Any:
    if name == "PoolPartyTaskRunner":  # lazily: the job imports prefect_poolparty.job only
        from .runner import PoolPartyTaskRunner

        globals()[name] = PoolPartyTaskRunner
        return PoolPartyTaskRunner
    raise AttributeError(f"module 'prefect_poolparty' has no attribute {name!r}")
