"""What a status check tells Snakemake about a submitted job, read from its batch handle (no scheduler
call): still running, succeeded, or failed with which message; and when finished jobs are held back
so that the jobs they make ready leave together."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

#: a failed task's job log is stored by the engine right after its result: wait this long for it
LOG_WAIT = 10.0
#: cluster queues: finished jobs are reported once no other result came for 1 s (at most 5 s late)
REPORT_BURST = (1.0, 5.0)
#: a failed job whose log is not stored yet: check again soon
WAIT_FOR_LOG = ("wait", None)


def read_outcome(handle: Any, task: int, aux: dict, now: float, engine_alive: Callable[[], bool]) -> Optional[tuple]:
    """None while the job runs; ``WAIT_FOR_LOG``; else ("ok", None), ("error", exception or None) or
    ("internal", exception) when the engine stopped without an answer for this job."""
    try:
        ok, value = handle.outcome(task)
    except KeyError:  # no result yet
        if handle.done():
            return ("error", handle.error)
        if not engine_alive():
            return ("internal", RuntimeError("the poolparty engine stopped before this job finished"))
        return None
    if ok:
        return ("ok", None)
    # the rule failed: its log follows its result in the store, normally in the same instant
    if not handle.done():
        from poolparty.store.logs import chunk_log_text

        first = aux.setdefault("failed_seen", now)
        if now - first < LOG_WAIT and chunk_log_text(handle, task) is None:
            return WAIT_FOR_LOG
    return ("error", value)


def hold_back(finished_at: Sequence[float], now: float, burst: bool) -> bool:
    """Hold finished jobs back while results keep arriving (each less than ``quiet`` seconds after the
    previous one, for at most ``cap`` seconds): on a cluster, what they make ready leaves as one array."""
    if not finished_at:
        return False
    quiet, cap = REPORT_BURST if burst else (0.0, 0.0)
    return now - max(finished_at) < quiet and now - min(finished_at) < cap


def failure_message(error: Any, external_jobid: str, task: int, max_resubmissions: int) -> str:
    """Snakemake's one-line reason for a failed job, from the exception the core gave its task."""
    from concurrent.futures import CancelledError

    from poolparty import CommandFailed, RetryLimitExceeded

    if isinstance(error, CommandFailed):
        return f"poolparty job {external_jobid} exited with status {error.returncode}. "
    if isinstance(error, RetryLimitExceeded):
        why = error.failures.get(task, "infrastructure failures")
        return f"poolparty gave up on job {external_jobid} after {max_resubmissions} resubmission(s): {why}. "
    if isinstance(error, CancelledError):
        return f"poolparty job {external_jobid} was cancelled ({error}). "
    if error is None:
        return f"poolparty job {external_jobid} ended without a result. "
    return f"poolparty job {external_jobid} failed: {error}. "
