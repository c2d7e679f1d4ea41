"""Each chunk's submissions, attempts and job ids, appended as records. Replayed on resume so that
running jobs are adopted, finished results reused, and only what is missing is submitted again."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolparty.store import records
from poolparty.store.claims import STORED
from poolparty.resources import Resources


@dataclass
class ChunkHistory:
    sub: int | None = None  # latest submission number
    element: str | None = None  # latest element id
    job_id: str | None = None  # latest submission's job id (what cancels it)
    resubmissions: int = 0
    resources: Resources | None = None
    gave_up: str | None = None


@dataclass
class JournalState:
    chunks: dict[int, ChunkHistory] = field(default_factory=dict)
    next_sub: int = 0
    stored: set[int] = field(default_factory=set)  # chunks recorded as stored (see record_stored)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._writer: records.RecordWriter | None = None

    def replay(self) -> JournalState:
        state = JournalState()
        for rec in records.read_records(self.path):
            k: dict[str, Any] = rec.key
            if k["ev"] == "sub":
                state.next_sub = max(state.next_sub, k["sub"] + 1)
                res = Resources.from_json(k["res"])
                for chunk, element in zip(k["chunks"], k["elements"]):
                    h = state.chunks.setdefault(chunk, ChunkHistory())
                    if h.sub is not None:
                        h.resubmissions += 1
                    h.sub, h.element, h.resources, h.job_id = k["sub"], element, res, k["job"]
            elif k["ev"] == "giveup":
                state.chunks.setdefault(k["chunk"], ChunkHistory()).gave_up = k["why"]
            elif k["ev"] == STORED:
                state.stored.update(k["chunks"])
        return state

    def _w(self) -> records.RecordWriter:
        if self._writer is None:
            self._writer = records.RecordWriter(self.path)
        return self._writer

    def record_submission(self, sub: int, job_id: str, chunks: list[int], elements: list[str],
                          resources: Resources) -> None:
        self._w().append({"ev": "sub", "sub": sub, "job": job_id, "chunks": chunks, "elements": elements,
                          "res": resources.to_json()})
        self._w().sync()

    def record_stored(self, chunks: list[int]) -> None:
        """Chunks whose results are in the store (fsynced): elements that start late skip them."""
        if chunks:
            self._w().append({"ev": STORED, "chunks": chunks})
            self._w().sync()

    def record_give_up(self, chunk: int, why: str) -> None:
        self._w().append({"ev": "giveup", "chunk": chunk, "why": why})
        self._w().sync()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
