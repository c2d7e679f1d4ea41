"""Every scheduler command goes through here: one rate limiter per process, the user's shared budget
for calls that change the queue (queues/call_budget.py), a timeout, and jittered back-off retries on the
transient errors busy controllers produce ("Socket timed out", "rate too high"), which every process of
the user then honours."""
from __future__ import annotations

import logging
import random
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from poolparty.errors import ConfigurationError, SchedulerCommandError, SubmissionError
from poolparty.queues.call_budget import DEFAULT_CALLS_PER_SECOND, BucketState, CallBudget, take_token

log = logging.getLogger("poolparty.scheduler")

TRANSIENT_PATTERNS = (
    r"socket timed out", r"timed out on send/recv", r"rate too high", r"rate limit", r"try again",
    r"unable to contact slurm controller", r"slurm_load_jobs error: (?!invalid job id)",
    r"connection refused", r"temporarily unavailable", r"resource temporarily", r"commlib error",
    r"unable to send message to qmaster", r"can't contact qmaster", r"unable to contact qmaster", r"failed receiving gdi request",
    r"too many open files", r"transient", r"cannot connect to server", r"cannot connect to lsf",
    r"lsf is down", r"daemon not responding",
)
_TRANSIENT = re.compile("|".join(TRANSIENT_PATTERNS), re.IGNORECASE)


def controller_busy(stderr: str) -> bool:
    """The scheduler's answer says it is overloaded or out of reach for now: retry later, and let the
    user's other processes hold back too."""
    return bool(_TRANSIENT.search(stderr))


class RateLimiter:
    """Token bucket shared by every pool of the process: the controller sees a bounded call rate (the
    same refill rule as the user's shared budget, :func:`~poolparty.queues.call_budget.take_token`, kept
    in memory)."""

    def __init__(self, rate: float = 5.0, burst: int = 10):
        self.rate = rate
        self.burst = burst
        self._state = BucketState(float(burst), time.monotonic())
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                self._state, wait = take_token(self._state, time.monotonic(), self.rate, self.burst)
            if wait <= 0:
                return
            time.sleep(wait)


GLOBAL_LIMITER = RateLimiter()


@dataclass
class SchedulerCLI:
    """Runs scheduler commands as argv lists (never through a shell)."""

    timeout: float = 60.0
    attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    limiter: RateLimiter = field(default_factory=lambda: GLOBAL_LIMITER)
    calls: int = 0
    #: submissions and cancels per second, for all poolparty processes of the user on this host together
    calls_per_second: float = DEFAULT_CALLS_PER_SECOND
    budget: CallBudget | None = None  # made on first use

    def shared_budget(self) -> CallBudget:
        if self.budget is None:
            self.budget = CallBudget(self.calls_per_second)
        return self.budget

    def require(self, program: str, queue: str) -> None:
        if shutil.which(program) is None:
            raise ConfigurationError(
                f"queue={queue!r} needs the `{program}` command, which is not on PATH. Run on a login node "
                f"of a {queue.upper()} cluster, load its module, or use queue='local'.")

    def run(self, argv: Sequence[str], *, submission: bool = False, ok_codes: Sequence[int] = (0,),
            retry_on_timeout: bool = True, changes_queue: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; a submission, or a call that ``changes_queue`` (cancel, throttle), first takes a
        token of the user's shared budget."""
        argv = [str(a) for a in argv]
        changes_queue = changes_queue or submission
        error = SubmissionError if submission else SchedulerCommandError
        stderr = ""
        rc: int | None = None
        for attempt in range(1, self.attempts + 1):
            if changes_queue:
                self.shared_budget().acquire()
            self.limiter.acquire()
            self.calls += 1
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as e:
                rc, stderr = None, f"no answer within {self.timeout:g} s ({e.stderr or ''})"
                if not retry_on_timeout:
                    break
            except FileNotFoundError:
                raise error(argv, 127, f"{argv[0]}: command not found", attempt) from None
            else:
                if proc.returncode in ok_codes:
                    return proc
                rc, stderr = proc.returncode, (proc.stderr or proc.stdout)
                if not controller_busy(stderr):
                    raise error(argv, rc, stderr, attempt)
            if attempt < self.attempts:
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.5)
                self.shared_budget().busy(delay)  # the user's other processes hold back too
                log.info("%s failed transiently (%s); retry %d/%d in %.1f s", argv[0],
                         stderr.strip()[:200], attempt, self.attempts - 1, delay)
                time.sleep(delay)
        raise error(argv, rc, stderr, self.attempts)
