"""Resume: from a batch's replayed journal and its chunks, the plan of what a restarted driver adopts.

Chunks the journal says are queued are adopted with their element and submission (the next poll tells
whether they live); given-up chunks and chunks whose jobs the last driver cancelled start afresh; chunks whose results are stored although the journal
does not say so (a driver killed between the two) are reported, to be recorded before any file goes;
chunks the journal says are stored but whose results the store lacks (damaged records skipped) are
reopened: the store, not the journal, is the truth, and they are submitted afresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from poolparty.engine.batch_state import ChunkRun
from poolparty.phases import ChunkPhase
from poolparty.resources import Resources
from poolparty.store.journal import JournalState


@dataclass(frozen=True)
class ChunkRestore:
    """A chunk not stored yet, as the journal left it."""

    chunk: int
    resources: Resources | None  # of its latest submission (escalated by retries); None: as submitted now
    resubmissions: int  # 0 for a chunk that was given up: a resume gives it a fresh retry budget


@dataclass
class AdoptedSubmission:
    sub: int
    job_id: str  # "?<batch>:<sub>" when the journal did not record it: not cancellable by id
    elements: dict[int, str]  # chunk -> element, chunks in the batch's order


@dataclass
class AdoptionPlan:
    next_sub: int  # submission numbers already used start after this
    unrecorded_stored: list[int]  # stored chunks the journal does not record as stored
    done_jobs: dict[int, tuple[int | None, str | None]]  # stored chunk -> (sub, element) of its last job
    reopened: list[int] = field(default_factory=list)  # recorded as stored, results not in the store
    restored: list[ChunkRestore] = field(default_factory=list)
    submissions: list[AdoptedSubmission] = field(default_factory=list)  # first seen first

    @property
    def adopted(self) -> int:
        """Queued chunks adopted."""
        return sum(len(s.elements) for s in self.submissions)


def plan_adoption(state: JournalState, chunks: Sequence[ChunkRun], batch: int) -> AdoptionPlan:
    """What to adopt of batch number ``batch`` from its journal ``state``; ``chunks`` as the store left them
    (phase DONE when every task's result is stored)."""
    done = [c.chunk for c in chunks if c.phase is ChunkPhase.DONE]
    plan = AdoptionPlan(next_sub=state.next_sub,
                        unrecorded_stored=sorted(c for c in done if c not in state.stored),
                        done_jobs={c: (state.chunks[c].sub, state.chunks[c].element)
                                   for c in done if c in state.chunks})
    subs: dict[int, AdoptedSubmission] = {}
    for c in chunks:
        h = state.chunks.get(c.chunk)
        if c.phase is ChunkPhase.DONE:
            continue
        if c.chunk in state.stored:  # its job ended long ago: not adopted, submitted again afresh
            plan.reopened.append(c.chunk)
            plan.restored.append(ChunkRestore(c.chunk, h.resources if h else None, 0))
            continue
        if h is None:
            continue
        plan.restored.append(ChunkRestore(c.chunk, h.resources, 0 if h.gave_up else h.resubmissions))
        if h.gave_up or h.cancelled or h.element is None or h.sub is None:
            continue  # a job the last driver cancelled is gone: submitted afresh, not adopted
        if h.sub not in subs:
            subs[h.sub] = AdoptedSubmission(h.sub, h.job_id or f"?{batch}:{h.sub}", {})
            plan.submissions.append(subs[h.sub])
        subs[h.sub].elements[c.chunk] = h.element
    return plan
