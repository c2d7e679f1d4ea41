"""One status query per poll per user, not per pool: every poolparty process of one user on one host
shares one snapshot of the scheduler. The first pool that needs fresh status asks the scheduler once for
all of the user's poolparty jobs (``QueueAdapter.query_user``) and publishes the snapshot; the others
read it while it is fresh. Fresh means taken within the reader's polling floor
(``min_poll_interval``) and after its own last submission or cancel: a pool never sees older data than
its own poll would have given it.

Refreshing is serialized by an flock; a process that cannot take it within 3/4 of the floor (a holder
stopped, hung, or slow) asks the scheduler for its own pool instead of waiting longer, so such a holder
delays the others by less than one interval; a holder that dies drops the flock with it. Where the per-user directory cannot be trusted, each pool asks for itself."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import AbstractSet, Any

from poolparty.errors import UnsafeWorkDirError
from poolparty.queues.base import QueueAdapter
from poolparty.queues.states import JobState, JobStatus
from poolparty.store.user_state import FileLock, read_private_json, status_paths, user_state_dir, write_private_json

log = logging.getLogger("poolparty")

Pools = dict[str, dict[str, JobStatus]]
#: how long (in polling floors) a pool waits for another's refresh before it asks alone: a refresh takes
#: one scheduler call, and the pool's own query still fits in the interval after the wait
LOCK_WAIT = 0.75


def encode_snapshot(taken: float, pools: Pools) -> dict[str, Any]:
    """The snapshot as JSON (never a pickle): ``{"taken": t, "pools": {name: {element: [state, reason]}}}``."""
    return {"taken": taken, "pools": {name: {e: [s.state.value, s.reason] for e, s in states.items()}
                                      for name, states in pools.items()}}


def decode_snapshot(doc: Any, oldest: float, now: float) -> Pools | None:
    """The pools of a snapshot taken between ``oldest`` and ``now``; None when it is older, from the
    future (a clock step), or not a snapshot at all (a torn or foreign file: the reader asks itself)."""
    try:
        taken = float(doc["taken"])
        if not oldest <= taken <= now + 1.0:
            return None
        return {str(name): {str(e): JobStatus(JobState(state), str(reason)) for e, (state, reason) in states.items()}
                for name, states in doc["pools"].items()}
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


class SharedStatus:
    """A pool's door to the scheduler's status: its states come from the user's shared snapshot when one
    is fresh, else from one per-user query this process publishes."""

    def __init__(self, queue: QueueAdapter, directory: Path | None = None):
        self.queue = queue
        self._directory = directory
        self._shared = queue.shares_status
        self._scope: str | None = None

    def query(self, name: str, awaited: AbstractSet[str] = frozenset(),
              not_before: float = 0.0) -> tuple[dict[str, JobStatus], bool]:
        """(the states of pool ``name``, whether another process's query answered them). ``awaited``: the
        pool's elements whose end still matters (see :meth:`QueueAdapter.settle`). ``not_before``: wall time
        of the pool's last submission or cancel; a snapshot older than it misses its jobs."""
        paths = self._paths() if self._shared else None
        if paths is None:
            return self.queue.query_awaiting(name, awaited), False
        snapshot, lock_path = paths
        floor = self.queue.min_poll_interval
        pools = self._fresh(snapshot, max(time.time() - floor, not_before))
        if pools is not None:
            return self.queue.settle(name, pools.get(name, {}), awaited), True
        lock = FileLock(lock_path)
        if not self._shared or not self._take(lock, LOCK_WAIT * floor):
            log.debug("poolparty: the status snapshot is being refreshed by a process that takes too long; "
                      "asking the scheduler for pool %s alone", name)
            return self.queue.query_awaiting(name, awaited), False
        try:
            pools = self._fresh(snapshot, max(time.time() - floor, not_before))  # refreshed while we waited
            if pools is not None:
                return self.queue.settle(name, pools.get(name, {}), awaited), True
            taken = time.time()  # before the query: the data is at least this new
            pools = self.queue.query_user()
            try:
                write_private_json(snapshot, encode_snapshot(taken, pools))
            except OSError as e:
                self._give_up_sharing(e)
        finally:
            lock.release()
        return self.queue.settle(name, pools.get(name, {}), awaited), False

    def _take(self, lock: FileLock, within: float) -> bool:
        try:
            return lock.acquire(within)
        except (UnsafeWorkDirError, OSError) as e:
            self._give_up_sharing(e)
            return False

    def _fresh(self, snapshot: Path, oldest: float) -> Pools | None:
        try:
            return decode_snapshot(read_private_json(snapshot), oldest, time.time())
        except (UnsafeWorkDirError, OSError) as e:
            self._give_up_sharing(e)
            return None

    def _paths(self) -> tuple[Path, Path] | None:
        try:
            directory = self._directory or user_state_dir()
        except (UnsafeWorkDirError, OSError) as e:
            self._give_up_sharing(e)
            return None
        self._scope = self._scope or self.queue.status_scope()
        return status_paths(directory, self._scope)

    def _give_up_sharing(self, error: Exception) -> None:
        """A per-user directory or file we cannot trust: this pool asks the scheduler for itself."""
        if self._shared:
            log.warning("poolparty: not sharing scheduler status with your other pools: %s", error)
        self._shared = False
