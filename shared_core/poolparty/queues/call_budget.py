"""The user's budget of scheduler calls that change the queue (submissions, cancels, throttle
changes): one token bucket shared by every poolparty process of the user on this host, so ten
notebooks submitting at once ask the controller no faster than one would. When the controller says it
is busy, every process backs off, not only the one that heard it.

The bucket is a private JSON file read and written under an flock (store/user_state.py). A holder that
hangs delays another by at most ``lock_wait``: then the caller goes on with its own process-wide limit
(queues/cli.py), so nothing ever waits on a process that stopped or died."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolparty.errors import UnsafeWorkDirError
from poolparty.store.user_state import FileLock, budget_paths, read_private_json, user_state_dir, write_private_json

log = logging.getLogger("poolparty.scheduler")

#: submissions and cancels per second, shared by all poolparty processes of a user on one host
DEFAULT_CALLS_PER_SECOND = 5.0


@dataclass(frozen=True)
class BucketState:
    tokens: float
    last: float  # wall time the tokens were counted at
    busy_until: float = 0.0  # the controller said it is busy: no call before this wall time

    @classmethod
    def of(cls, doc: Any, now: float, burst: float) -> "BucketState":
        """The stored state, or a full bucket when there is none (or it is torn or from the future)."""
        try:
            state = cls(float(doc["tokens"]), float(doc["last"]), float(doc.get("busy_until", 0.0)))
        except (TypeError, KeyError, ValueError, AttributeError):
            return cls(burst, now)
        return state if state.last <= now + 1.0 else cls(burst, now)

    def to_json(self) -> dict[str, float]:
        return {"tokens": self.tokens, "last": self.last, "busy_until": self.busy_until}


def take_token(state: BucketState, now: float, rate: float, burst: float) -> tuple[BucketState, float]:
    """(the new state, seconds to wait before asking again; 0: a token was taken). Tokens refill at
    ``rate`` per second up to ``burst``; none is handed out while the controller is busy."""
    tokens = min(burst, state.tokens + max(0.0, now - state.last) * rate)
    if now < state.busy_until:
        return BucketState(tokens, now, state.busy_until), state.busy_until - now
    if tokens >= 1.0:
        return BucketState(tokens - 1.0, now, state.busy_until), 0.0
    return BucketState(tokens, now, state.busy_until), (1.0 - tokens) / rate


class CallBudget:
    """The shared token bucket. ``acquire`` before a call that changes the queue; ``busy`` when the
    controller answered that it is overloaded."""

    def __init__(self, rate: float = DEFAULT_CALLS_PER_SECOND, directory: Path | None = None,
                 lock_wait: float = 1.0):
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self.lock_wait = lock_wait
        self._directory = directory
        self._paths: tuple[Path, Path] | None = None
        self._broken = False

    def acquire(self) -> None:
        """Wait for a token (or for the controller to be less busy)."""
        while True:
            wait = self._update(lambda s, now: take_token(s, now, self.rate, self.burst))
            if wait <= 0:
                return
            time.sleep(min(wait, 5.0))

    def busy(self, delay: float) -> None:
        """The controller is overloaded: no process of the user calls it for ``delay`` seconds."""
        self._update(lambda s, now: (BucketState(s.tokens, s.last, max(s.busy_until, now + delay)), 0.0))

    def _update(self, change) -> float:
        """Apply ``change(state, now) -> (state, wait)`` under the flock; 0 (go on) when the bucket cannot
        be used: a hung holder, or a file or directory we do not trust."""
        paths = self._files()
        if paths is None:
            return 0.0
        state_file, lock_file = paths
        lock = FileLock(lock_file)
        try:
            if not lock.acquire(self.lock_wait):
                return 0.0
            try:
                now = time.time()
                state, wait = change(BucketState.of(read_private_json(state_file), now, self.burst), now)
                write_private_json(state_file, state.to_json())
                return wait
            finally:
                lock.release()
        except (UnsafeWorkDirError, OSError) as e:
            self._give_up(e)
            return 0.0

    def _files(self) -> tuple[Path, Path] | None:
        if self._broken:
            return None
        if self._paths is None:
            try:
                self._paths = budget_paths(self._directory or user_state_dir())
            except (UnsafeWorkDirError, OSError) as e:
                self._give_up(e)
                return None
        return self._paths

    def _give_up(self, error: Exception) -> None:
        log.warning("poolparty: scheduler calls are limited per process only, not shared with your other "
                    "pools: %s", error)
        self._broken = True
