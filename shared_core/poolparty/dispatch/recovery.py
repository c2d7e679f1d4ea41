"""A chunk whose job ended without its result: resubmitted within the retry policy, or given up."""
from __future__ import annotations

import logging

from poolparty.dispatch.collector import Collector
from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.engine.batch_state import Batch, ChunkRun
from poolparty.retry import ActionKind, FailureClass, RetryPolicy, classify_worker_end

log = logging.getLogger("poolparty")


class Recovery:
    def __init__(self, jobs: PoolJobs, retry: RetryPolicy, collector: Collector):
        self.jobs = jobs
        self.retry = retry
        self.collector = collector

    def job_lost(self, b: Batch, c: ChunkRun, failure: FailureClass, detail: str) -> None:
        """The retry policy decides: the chunk waits to be submitted again, or it is given up. What the
        chunk's worker recorded of its end (out of memory, stopped at the walltime warning) tells apart an
        end the scheduler cannot."""
        end, why = self.collector.worker_end(b, c) or (None, "")
        told = classify_worker_end(failure, end)
        if told is not failure:
            failure, detail = told, f"{detail}; {why}"
        decision = self.retry.decide(failure, c.resubmissions, c.resources, c.own_bound_ends.get(failure, 0))
        b.journal.record_lost(c.chunk, c.element, failure.value, detail)  # the report's "resubmitted, why"
        missing = self.collector.store_log(b, c)
        if missing:  # the job never started: say why, and what to do
            detail += f" ({missing}: set python_path to an interpreter that exists on the nodes)"
        c.job_lost(detail)
        if decision.kind is ActionKind.RESUBMIT:
            level = logging.INFO if failure is FailureClass.WALLTIME_STOP else logging.WARNING  # a continuation: planned, no fault
            log.log(level, "poolparty: %s: chunk %d (tasks %s): %s -> resubmitting it (%s)", b.handle.label,
                    c.chunk, _span(c.tasks), detail, decision.why)
            c.retry_with(decision.resources, None if decision.counted else failure)
            self.jobs.stats["resubmissions"] += 1
            return
        self.give_up(b, c, f"{detail}; {decision.why}")

    def give_up(self, b: Batch, c: ChunkRun, why: str) -> None:
        """Journaled (a resume starts it afresh), logged, its partial results kept and handed out, and
        its caller told which tasks will have no result."""
        c.give_up(why)
        b.journal.record_give_up(c.chunk, why)
        log.error("poolparty: chunk %d of %s gave up: %s", c.chunk, b.handle.label, why)
        self.collector.keep_partial(b, c)
        b.handle.chunk_given_up(c.chunk, [t for t in c.tasks if t not in b.store.stored], why)


def _span(tasks: list[int]) -> str:
    return f"{tasks[0]}..{tasks[-1]}" if len(tasks) > 1 else str(tasks[0]) if tasks else "-"
