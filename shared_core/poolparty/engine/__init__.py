"""The engine: one run directory, one queue adapter and one dispatcher thread per pool (``Engine``),
the state of each batch it drives, the caller's handle on a batch, and the process life cycle."""
from __future__ import annotations

from typing import Any

__all__ = ["Engine", "EngineOptions"]


def __getattr__(name: str) -> Any:
    # lazily: dispatch/ imports engine.batch_state, and engine.engine imports dispatch/
    if name in __all__:
        from poolparty.engine import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'poolparty.engine' has no attribute {name!r}")
