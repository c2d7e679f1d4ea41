"""A batch's journal (``journal.rec``): each chunk's submissions, attempts and job ids, its give-up and
which chunks the driver has stored (or reopened: their stored results were found damaged), appended as records and parsed here only. The driver replays it on
resume (running jobs are adopted, finished results reused, only what is missing is submitted again),
``poolparty status`` reads every attempt from it, and a worker learns from it which chunks are stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from poolparty.store import records

if TYPE_CHECKING:  # the worker reads the journal (StoredChunks) and imports little
    from poolparty.resources import Resources

#: the journal's events: a submission, a chunk given up, chunks whose results are stored, chunks stored
#: once whose results the store no longer holds (damaged): the latest of STORED/REOPENED per chunk holds;
#: chunks whose jobs the driver cancelled itself (Ctrl-C, terminate): not lost, not to be adopted
SUBMITTED, GAVE_UP, STORED, REOPENED, CANCELLED = "sub", "giveup", "stored", "reopened", "cancelled"
#: a chunk's job ended without its result (why, in the retry policy's words): read by the efficiency report
LOST = "lost"


@dataclass(frozen=True)
class Attempt:
    """One submission of a chunk: the submission number, its job id and the chunk's element in it."""

    sub: int
    job: str
    element: str


@dataclass
class ChunkHistory:
    sub: int | None = None  # latest submission number
    element: str | None = None  # latest element id
    job_id: str | None = None  # latest submission's job id (what cancels it)
    resubmissions: int = 0
    resources: Resources | None = None
    gave_up: str | None = None
    attempts: list[Attempt] = field(default_factory=list)  # every submission, oldest first
    cancelled: bool = False  # its latest job was cancelled by the driver (until it is submitted again)
    cancellations: int = 0  # submissions that ended so: the next one is not a resubmission


@dataclass
class JournalState:
    chunks: dict[int, ChunkHistory] = field(default_factory=dict)
    next_sub: int = 0
    stored: set[int] = field(default_factory=set)  # chunks recorded as stored (see record_stored)
    first_resources: Resources | None = None  # of the batch's first submission


def events(path: Path, start: int = 0) -> Iterator[tuple[str | None, dict[str, Any], int]]:
    """(event, its record's key, offset just past it) of every valid journal record from byte ``start``."""
    for rec in records.read_records(path, start):
        yield rec.key.get("ev"), rec.key, rec.end


def replay(path: Path) -> JournalState:
    """Everything the journal at ``path`` says, in one pass."""
    from poolparty.resources import Resources

    state = JournalState()
    for ev, k, _ in events(path):
        if ev == SUBMITTED:
            state.next_sub = max(state.next_sub, k["sub"] + 1)
            res = Resources.from_json(k["res"])
            if state.first_resources is None:
                state.first_resources = res
            for chunk, element in zip(k["chunks"], k["elements"]):
                h = state.chunks.setdefault(chunk, ChunkHistory())
                if h.sub is not None and not h.cancelled:
                    h.resubmissions += 1
                h.cancelled = False
                h.sub, h.element, h.resources, h.job_id = k["sub"], element, res, k["job"]
                h.attempts.append(Attempt(k["sub"], k["job"], element))
        elif ev == GAVE_UP:
            state.chunks.setdefault(k["chunk"], ChunkHistory()).gave_up = k["why"]
        elif ev == STORED:
            state.stored.update(k["chunks"])
        elif ev == REOPENED:
            state.stored.difference_update(k["chunks"])
        elif ev == CANCELLED:
            for chunk in k["chunks"]:
                h = state.chunks.setdefault(chunk, ChunkHistory())
                h.cancelled, h.cancellations = True, h.cancellations + 1
    return state


class StoredChunks:
    """The chunks the driver has stored, from the batch's journal, read on from where the last look
    stopped: an element checks every chunk it might claim, and the journal grows through the map. The
    latest event per chunk holds: a chunk reopened after it was stored (its results damaged) runs again."""

    def __init__(self, journal: Path):
        self.journal = journal
        self._offset = 0
        self._chunks: set[int] = set()

    def __contains__(self, chunk: int) -> bool:
        for ev, k, end in events(self.journal, self._offset):
            self._offset = end
            if ev == STORED:
                self._chunks.update(k.get("chunks", ()))
            elif ev == REOPENED:
                self._chunks.difference_update(k.get("chunks", ()))
        return chunk in self._chunks


class Journal:
    """The driver's writer of one batch's journal (each event fsynced: a resumed driver trusts it)."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: records.RecordWriter | None = None

    def replay(self) -> JournalState:
        return replay(self.path)

    def _w(self) -> records.RecordWriter:
        if self._writer is None:
            self._writer = records.RecordWriter(self.path)
        return self._writer

    def record_submission(self, sub: int, job_id: str, chunks: list[int], elements: list[str],
                          resources: Resources) -> None:
        self._w().append({"ev": SUBMITTED, "sub": sub, "job": job_id, "chunks": chunks, "elements": elements,
                          "res": resources.to_json()})
        self._w().sync()

    def record_stored(self, chunks: list[int]) -> None:
        """Chunks whose results are in the store (fsynced): elements that start late skip them."""
        if chunks:
            self._w().append({"ev": STORED, "chunks": chunks})
            self._w().sync()

    def record_reopened(self, chunks: list[int]) -> None:
        """Chunks recorded as stored whose results the store does not hold (fsynced before they are
        submitted again): workers run them again instead of taking the old STORED for the truth."""
        if chunks:
            self._w().append({"ev": REOPENED, "chunks": chunks})
            self._w().sync()

    def record_cancelled(self, chunks: list[int]) -> None:
        """Chunks whose queued jobs the driver itself cancelled: a resume submits them afresh instead of
        adopting jobs it would find gone ("vanished") and count as resubmissions."""
        if chunks:
            self._w().append({"ev": CANCELLED, "chunks": chunks})

    def record_lost(self, chunk: int, element: str | None, failure: str, detail: str) -> None:
        """A chunk's job ended without its result (``failure``: the retry policy's class of it), for the
        efficiency report's "resubmitted, and why"; written before the retry or give-up it leads to."""
        self._w().append({"ev": LOST, "chunk": chunk, "element": element, "failure": failure, "why": detail})

    def record_give_up(self, chunk: int, why: str) -> None:
        self._w().append({"ev": GAVE_UP, "chunk": chunk, "why": why})
        self._w().sync()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
