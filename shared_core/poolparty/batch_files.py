"""Writing and reading a batch's inputs: one function pickle, one record file of chunks, one index."""
from __future__ import annotations

import array
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import record_log
from .errors import ConfigurationError, WorkDirMismatchError
from .payload import Call, SharedFunction
from .workdir import atomic_write, make_private_dir, read_json, write_json

FORMAT = 1


@dataclass
class EncodedBatch:
    """A batch's inputs pickled in memory, before anything touches the disk or the scheduler."""

    shared: bytes | None
    chunks: list[tuple[list[int], bytes]]  # (task indices, pickled list of payloads)
    n_tasks: int
    fingerprint: str


def encode_batch(shared: SharedFunction | None, chunks: Sequence[Sequence[tuple[int, Any]]]) -> EncodedBatch:
    """Pickle everything first: an unpicklable function or argument fails here, before submission."""
    import hashlib  # driver-side imports: the worker reads batches without them

    import cloudpickle

    from .by_value import register_local_modules

    register_local_modules([getattr(shared, "fn", None), getattr(shared, "initializer", None)])
    register_local_modules(x for chunk in chunks for _, p in chunk if isinstance(p, Call)
                           for x in (p.fn, *p.args, *p.kwargs.values()))
    try:
        shared_bytes = cloudpickle.dumps(shared) if shared is not None else None
    except Exception as e:
        raise ConfigurationError(
            f"cannot pickle the function {getattr(shared.fn, '__qualname__', shared.fn)!r}: {e}. "
            "Functions travel to the nodes with cloudpickle; move unpicklable state (open files, locks, "
            "connections) inside the function.") from e
    h = hashlib.sha256()
    out: list[tuple[list[int], bytes]] = []
    n = 0
    for chunk in chunks:
        indices = [i for i, _ in chunk]
        try:
            data = cloudpickle.dumps([p for _, p in chunk])
        except Exception as e:
            raise ConfigurationError(
                f"cannot pickle the arguments of task(s) {indices[:5]}: {e}. Arguments travel to the nodes "
                "with cloudpickle; pass data, not open resources.") from e
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        out.append((indices, data))
        n += len(indices)
    qualname = getattr(getattr(shared, "fn", None), "__qualname__", "")
    h.update(qualname.encode())
    return EncodedBatch(shared_bytes, out, n, h.hexdigest())


class BatchFiles:
    """Paths of one batch directory, and the worker-side readers."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = path / "meta.json"
        self.function = path / "function.pkl"
        self.chunks = path / "chunks.rec"
        self.index = path / "chunks.idx"
        self.journal = path / "journal.rec"
        self.results = path / "results.rec"
        self.logs = path / "logs.rec"
        self.incoming = path / "incoming"

    # -- driver side -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta.exists()

    def write(self, batch: EncodedBatch, kind: str) -> None:
        make_private_dir(self.path)
        make_private_dir(self.incoming)
        if batch.shared is not None:
            atomic_write(self.function, batch.shared)
        offsets = array.array("Q")
        tmp = self.chunks.with_suffix(".rec.tmp")
        tmp.unlink(missing_ok=True)
        with record_log.RecordWriter(tmp) as w:
            for c, (indices, data) in enumerate(batch.chunks):
                offsets.append(w.append({"chunk": c, "tasks": indices}, data))
            w.sync()
        os.replace(tmp, self.chunks)
        atomic_write(self.index, offsets.tobytes())
        # meta.json last: its presence means the inputs are complete
        write_json(self.meta, {"format": FORMAT, "kind": kind, "n_tasks": batch.n_tasks,
                               "n_chunks": len(batch.chunks), "fingerprint": batch.fingerprint,
                               "created": time.time(),
                               "chunk_tasks": [indices for indices, _ in batch.chunks]})

    def check_matches(self, batch: EncodedBatch) -> dict[str, Any]:
        meta = read_json(self.meta)
        if meta.get("fingerprint") != batch.fingerprint or meta.get("n_tasks") != batch.n_tasks:
            raise WorkDirMismatchError(
                f"{self.path} holds a different map ({meta.get('n_tasks')} tasks, other inputs) than the one "
                f"being run ({batch.n_tasks} tasks): to resume, run the same map with the same chunksize; "
                "otherwise use a fresh work_dir or delete this one.")
        return meta

    # -- worker side -------------------------------------------------------------------------
    def read_chunk(self, chunk: int) -> tuple[list[int], list[Any]]:
        with open(self.index, "rb") as f:
            f.seek(chunk * 8)
            raw = f.read(8)
        if len(raw) != 8:
            raise IndexError(f"chunk {chunk} is not in {self.index}")
        rec = record_log.read_at(self.chunks, int.from_bytes(raw, "little"))
        if rec.key.get("chunk") != chunk:
            raise ValueError(f"index of {self.chunks} is corrupt at chunk {chunk}")
        # pickle imports cloudpickle by itself when the stream needs it (functions sent by value)
        return rec.key["tasks"], pickle.loads(rec.payload)

    def read_shared(self) -> SharedFunction | None:
        try:
            data = self.function.read_bytes()
        except FileNotFoundError:
            return None
        return pickle.loads(data)

    def part_name(self, chunk: int, sub: int, job: str) -> str:
        """One file per chunk, submission and job: twins of a duplicated submission never share one."""
        return f"c{chunk}.s{sub}.j{job}"
