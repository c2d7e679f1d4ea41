"""How one pool's dispatcher runs: its job name, running limit, retry policy and polling cadence."""
from __future__ import annotations

import os
from dataclasses import dataclass

from poolparty.retry import RetryPolicy


@dataclass
class DispatchSettings:
    name: str  # the pool's job name
    max_running: int
    array: bool
    retry: RetryPolicy
    polling_interval: float  # upper bound of the adaptive status-poll interval
    tick: float  # how often results are looked for on disk
    python: str
    script: "os.PathLike[str]"
    claim_chunks: bool = True  # array elements run chunks whose own elements have not started
    linger: float = 0.0  # idle seconds an element waits for chunks of later batches (dispatch/warm)
    walltime_signal_lead: int | None = None  # seconds; None: from the walltime (submitter.warning_lead)

    @property
    def claims(self) -> bool:
        """Array elements may run chunks not their own (see store/claims)."""
        return self.array and self.claim_chunks

    @property
    def lingers(self) -> bool:
        """Array elements stay ``linger`` idle seconds for chunks of later batches of their shape."""
        return self.claims and self.linger > 0
