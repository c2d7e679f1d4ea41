"""Writing and reading a batch's inputs: one record file, ``chunks.rec``, holding (in this order) the
index of chunk offsets, the shared function (when there is one) and one record per chunk. One file, not
three: shared filesystems pay per inode, and a job opens one file to find its chunk."""
from __future__ import annotations

import array
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from poolparty.errors import CorruptWorkDirError, WorkDirMismatchError
from poolparty.payload import Call, SharedFunction
from poolparty.store import records
from poolparty.store.atomic import read_json, write_json
from poolparty.store.layout import BATCHES_DIR, BatchPaths
from poolparty.store.trust import check_batch, check_identity, identity, make_private_dir

FORMAT = 2  # 2: index and function inside chunks.rec (1 had chunks.idx and function.pkl)


@dataclass
class EncodedBatch:
    """A batch's inputs pickled in memory, before anything touches the disk or the scheduler."""

    shared: bytes | None
    chunks: list[tuple[list[int], bytes]]  # (task indices, pickled list of payloads)
    n_tasks: int
    fingerprint: str
    import_path: list[str] = field(default_factory=list)  # the driver's (see engine.by_value.driver_import_path)


def encode_batch(shared: SharedFunction | None, chunks: Sequence[Sequence[tuple[int, Any]]]) -> EncodedBatch:
    """Pickle everything first: an unpicklable function or argument fails here, before submission."""
    import hashlib  # driver-side imports: the worker reads batches without them

    from poolparty.engine.by_value import driver_import_path, dumps, register_local_modules

    register_local_modules([getattr(shared, "fn", None), getattr(shared, "initializer", None)])
    register_local_modules(x for chunk in chunks for _, p in chunk if isinstance(p, Call)
                           for x in (p.fn, *p.args, *p.kwargs.values()))
    # an unpicklable function or argument raises the pickler's own exception (TypeError, PicklingError,
    # whatever a __reduce__ raised), as multiprocessing does, with a note saying what to do
    try:
        shared_bytes = dumps(shared) if shared is not None else None
    except Exception as e:
        e.add_note(f"(poolparty: cannot pickle the function {getattr(shared.fn, '__qualname__', shared.fn)!r}"
                   " or the initializer: they travel to the nodes with cloudpickle; move unpicklable state "
                   "(open files, locks, connections) inside the function)")
        raise
    h = hashlib.sha256()
    out: list[tuple[list[int], bytes]] = []
    n = 0
    for chunk in chunks:
        indices = [i for i, _ in chunk]
        try:
            data = dumps([p for _, p in chunk])
        except Exception as e:
            e.add_note(f"(poolparty: cannot pickle the arguments of task(s) {indices[:5]}: they travel to "
                       "the nodes with cloudpickle; pass data, not open files, locks or connections)")
            raise
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        out.append((indices, data))
        n += len(indices)
    qualname = getattr(getattr(shared, "fn", None), "__qualname__", "")
    h.update(qualname.encode())
    return EncodedBatch(shared_bytes, out, n, h.hexdigest(), driver_import_path())


class BatchFiles(BatchPaths):
    """One batch directory's inputs: written by the driver, read by the worker and ``resume``."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._index_record: records.Record | None = None
        self._pinned: dict[Path, tuple[int, int]] = {}

    def pin(self) -> None:
        """Hold the run, the batch and its incoming/ by identity from now on (see :meth:`check_pinned`)."""
        self._pinned = {p: identity(p) for p in (self.run, self.run / BATCHES_DIR, self.path, self.incoming)}

    def check_pinned(self) -> None:
        """UnsafeWorkDirError if a directory held by :meth:`pin` was swapped for another (before any read)."""
        check_identity(self._pinned)

    # -- driver side -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta.exists()

    def reopen(self, batch: EncodedBatch) -> None:
        """Take an existing batch up again (a rerun with the same work_dir): it must hold this very map,
        and its ``incoming/``, where the jobs write, is made again if it went missing."""
        self.check_matches(batch)
        make_private_dir(self.incoming)
        self.pin()

    def write(self, batch: EncodedBatch, kind: str) -> None:
        make_private_dir(self.path)
        make_private_dir(self.incoming)
        self.pin()
        entries: list[tuple[dict[str, Any], bytes]] = []
        if batch.shared is not None:
            entries.append(({"shared": True}, batch.shared))
        entries += [({"chunk": c, "tasks": indices}, data) for c, (indices, data) in enumerate(batch.chunks)]
        # the index comes first and its size is known in advance, so the offsets it holds are exact
        index_key = {"index": len(batch.chunks), "shared": batch.shared is not None, "path": batch.import_path}
        at = records.encoded_size(index_key, 8 * len(batch.chunks))
        offsets = array.array("Q")
        for key, data in entries:
            if "chunk" in key:
                offsets.append(at)
            at += records.encoded_size(key, len(data))
        tmp = self.chunks.with_suffix(".rec.tmp")
        tmp.unlink(missing_ok=True)
        with records.RecordWriter(tmp) as w:
            w.append(index_key, offsets.tobytes())
            for key, data in entries:
                w.append(key, data)
            assert w.offset == at, "chunks.rec offsets computed wrongly"
            w.sync()
        os.replace(tmp, self.chunks)
        # meta.json last: its presence means the inputs are complete
        write_json(self.meta, {"format": FORMAT, "kind": kind, "n_tasks": batch.n_tasks,
                               "n_chunks": len(batch.chunks), "fingerprint": batch.fingerprint,
                               "created": time.time(),
                               "chunk_tasks": [indices for indices, _ in batch.chunks]})

    def read_meta(self) -> dict[str, Any]:
        """``meta.json``: the batch's kind, task and chunk counts, fingerprint and each chunk's tasks."""
        try:
            meta = read_json(self.meta)
        except ValueError as e:  # not JSON (a torn or edited file)
            meta = e
        if not isinstance(meta, dict) or not isinstance(meta.get("chunk_tasks", []), list):
            why = f"not JSON: {meta}" if isinstance(meta, ValueError) else "not a batch description"
            raise CorruptWorkDirError(
                f"{self.meta} is damaged ({why}), so which map batch {self.path.name} holds cannot be told. Its "
                f"stored results stay in {self.results.name}; run the map again with a fresh work_dir, or "
                f"delete {self.path} to drop this batch from the run.")
        return meta

    def check_matches(self, batch: EncodedBatch) -> dict[str, Any]:
        meta = self.read_meta()
        if meta.get("format") != FORMAT:
            raise WorkDirMismatchError(
                f"{self.path} was written by another poolparty version (batch format {meta.get('format')}, this "
                f"one writes {FORMAT}): finish it with that version, or use a fresh work_dir")
        if meta.get("fingerprint") != batch.fingerprint or meta.get("n_tasks") != batch.n_tasks:
            raise WorkDirMismatchError(
                f"{self.path} holds a different map ({meta.get('n_tasks')} tasks, other inputs) than the one "
                f"being run ({batch.n_tasks} tasks): to resume, run the same map with the same chunksize; "
                "otherwise use a fresh work_dir or delete this one.")
        return meta

    # -- worker side -------------------------------------------------------------------------
    def _index(self) -> records.Record:
        if self._index_record is None:
            check_batch(self.path, self.incoming)  # the door: pickles are code, read only from our own dirs
            rec = records.read_at(self.chunks, 0)
            if "index" not in rec.key:
                raise ValueError(f"{self.chunks} does not start with its index: written by another poolparty "
                                 f"version (batch format {FORMAT} expected)")
            self._index_record = rec
        return self._index_record

    def read_chunk(self, chunk: int) -> tuple[list[int], list[Any]]:
        """(task indices, payloads) of one chunk; CorruptWorkDirError naming the chunk and its tasks when
        its record (or the index that locates it) is damaged."""
        try:
            index = self._index()
            raw = index.payload[chunk * 8:chunk * 8 + 8]
            if chunk < 0 or len(raw) != 8:
                raise IndexError(f"chunk {chunk} is not in {self.chunks}")
            rec = records.read_at(self.chunks, int.from_bytes(raw, "little"))
        except ValueError as e:  # the record's CRC or frame does not check out
            raise self.damaged(chunk, str(e)) from None
        if rec.key.get("chunk") != chunk:
            raise self.damaged(chunk, f"its index points at the record of chunk {rec.key.get('chunk')}")
        # pickle imports cloudpickle by itself when the stream needs it (functions sent by value)
        return rec.key["tasks"], pickle.loads(rec.payload)

    def chunk_tasks(self, chunk: int) -> list[int]:
        """The chunk's task indices as ``meta.json`` lists them (readable when its input record is not)."""
        try:
            return list(self.read_meta()["chunk_tasks"][chunk])
        except (CorruptWorkDirError, LookupError, TypeError):
            return []

    def damaged(self, chunk: int, why: str) -> CorruptWorkDirError:
        """The error of a chunk whose input record cannot be read: which file, chunk and tasks, the fix."""
        return CorruptWorkDirError(
            f"{self.chunks} is damaged at chunk {chunk} (task(s) {self.chunk_tasks(chunk)}): {why}. The inputs "
            f"of these tasks cannot be read, so they cannot run (a disk or filesystem fault, or an edit); run "
            f"the map again with a fresh work_dir, or delete {self.path} and rerun it, to write them anew.")

    def import_path(self) -> list[str]:
        """The driver's import path when it submitted the batch (its user directories, script's first)."""
        return list(self._index().key.get("path", []))

    def read_shared(self) -> SharedFunction | None:
        """The batch's shared function: the record right after the index, when the index says there is one."""
        index = self._index()
        if not index.key.get("shared"):
            return None
        return pickle.loads(records.read_at(self.chunks, index.end).payload)

    def chunk_records(self) -> list[records.Record]:
        """Every chunk record, in chunk order (the resume command's inputs); CorruptWorkDirError naming
        the first chunk whose record is damaged."""
        check_batch(self.path, self.incoming)  # the door: pickles are code, read only from our own dirs
        found = [r for r in records.read_records(self.chunks, resync=True) if "chunk" in r.key]
        for chunk, rec in enumerate(found):
            if rec.key["chunk"] != chunk:
                raise self.damaged(chunk, "its record does not check out")
        n = self.read_meta().get("n_chunks", len(found))
        if len(found) < n:
            raise self.damaged(len(found), "its record does not check out")
        return found
