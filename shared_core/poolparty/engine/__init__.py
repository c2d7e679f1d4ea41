"""The engine: one run directory, one queue adapter and one dispatcher thread per pool (``Engine``),
the state of each batch it drives, the caller's handle on a batch, and the process life cycle."""
from poolparty.engine.engine import Engine, EngineOptions

__all__ = ["Engine", "EngineOptions"]
