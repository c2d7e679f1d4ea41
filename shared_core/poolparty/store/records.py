"""Append-only files of framed records: the on-disk format of inputs, results, logs and journal.

A record is ``header | key (JSON) | payload``; the header holds a magic, the CRC32 of key and payload
and both lengths. A reader stops at the first record that is short or fails its CRC, so a writer that
died mid-append (SIGKILL, node crash) leaves a valid prefix, never a torn record that parses.
"""
from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

MAGIC = b"PPr1"
HEADER = struct.Struct("<4sIIQ")  # magic, crc32(key+payload), key length, payload length


@dataclass(frozen=True)
class Record:
    key: dict[str, Any]
    payload: bytes
    offset: int
    end: int  # offset just past this record


def _key_bytes(key: dict[str, Any]) -> bytes:
    return json.dumps(key, separators=(",", ":"), sort_keys=True).encode()


def encoded_size(key: dict[str, Any], payload_length: int) -> int:
    """Bytes that :func:`encode` makes of ``key`` and a payload of this length."""
    return HEADER.size + len(_key_bytes(key)) + payload_length


def encode(key: dict[str, Any], payload: bytes = b"") -> bytes:
    k = _key_bytes(key)
    crc = zlib.crc32(payload, zlib.crc32(k))
    return HEADER.pack(MAGIC, crc, len(k), len(payload)) + k + payload


def _read_one(f: BinaryIO, offset: int) -> tuple[Record, int] | None:
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    magic, crc, klen, plen = HEADER.unpack(head)
    if magic != MAGIC or klen > 1 << 24:
        return None
    k = f.read(klen)
    payload = f.read(plen)
    if len(k) < klen or len(payload) < plen or zlib.crc32(payload, zlib.crc32(k)) != crc:
        return None
    try:
        key = json.loads(k)
    except ValueError:
        return None
    end = offset + HEADER.size + klen + plen
    return Record(key, payload, offset, end), end


def read_records(path: str | os.PathLike[str], start: int = 0) -> Iterator[Record]:
    """Yield the valid records of ``path`` from byte ``start``; a missing file yields nothing."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(start)
        offset = start
        while True:
            got = _read_one(f, offset)
            if got is None:
                return
            record, offset = got
            yield record


def read_at(path: str | os.PathLike[str], offset: int) -> Record:
    """Read the one record that starts at ``offset`` (as recorded in an index)."""
    with open(path, "rb") as f:
        f.seek(offset)
        got = _read_one(f, offset)
    if got is None:
        raise ValueError(f"no valid record at offset {offset} of {path}")
    return got[0]


def valid_length(path: str | os.PathLike[str]) -> int:
    """Length of the valid prefix: where the next record must be written after a crash."""
    end = 0
    for rec in read_records(path):
        end = rec.end
    return end


class RecordWriter:
    """Appends records to one file. Truncates a torn tail left by an earlier writer first."""

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o600, exclusive: bool = False,
                 create_new: bool = False):
        """``exclusive``: hold an flock for the writer's life; BlockingIOError if another holds it.
        ``create_new``: the file must not exist yet (FileExistsError otherwise): a claim."""
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (os.O_EXCL if create_new else 0), mode)
        if exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise
        self._f = os.fdopen(fd, "r+b", buffering=0)
        end = valid_length(self.path)
        self._f.truncate(end)
        self._f.seek(end)
        self.offset = end

    def append(self, key: dict[str, Any], payload: bytes = b"") -> int:
        """Write one record; return its offset. One ``write`` call, so readers see all or nothing valid."""
        return self.append_many([(key, payload)])[0]

    def append_many(self, records: list[tuple[dict[str, Any], bytes]]) -> list[int]:
        """Write several records with one ``write`` call (a chunk's results: one system call, not
        hundreds); return their offsets. A torn write leaves a valid prefix of whole records."""
        offsets: list[int] = []
        buf = bytearray()
        for key, payload in records:
            offsets.append(self.offset + len(buf))
            buf += encode(key, payload)
        view = memoryview(buf)
        while view:
            n = self._f.write(view)
            view = view[n:]
        self.offset += len(buf)
        return offsets

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
