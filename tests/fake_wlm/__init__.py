"""Fake SLURM 22.05 / SGE 8.1.9 schedulers for fault-injection tests (stdlib only).

See README.md in this directory for the API, the CLI subset and the fault actions.
`FakeCluster` is imported lazily so the generated CLIs start fast.
"""
from __future__ import annotations

from typing import Any

__all__ = ["FakeCluster", "FAULT_ACTIONS"]


def __getattr__(name: str) -> Any:
    if name == "FakeCluster":
        from .cluster import FakeCluster
        return FakeCluster
    if name == "FAULT_ACTIONS":
        from .model import FAULT_ACTIONS
        return FAULT_ACTIONS
    raise AttributeError(name)
