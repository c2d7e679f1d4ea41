"""Append-only files of framed records: the on-disk format of inputs, results, logs and journal.

A record is ``header | key (JSON) | payload``; the header holds a magic, the CRC32 of key and payload
and both lengths. A reader stops at the first record that is short or fails its CRC, so a writer that
died mid-append (SIGKILL, node crash) leaves a valid prefix, never a torn record that parses. A reader
that reads a whole file once (``resync=True``) goes on past a damaged region (a flipped bit, a block the
filesystem lost) to the next record that is whole and says which byte ranges it skipped; a reader that
follows a file while its writer appends keeps the plain rule, because a tail still being written looks
damaged too.
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


def _read_one(f: BinaryIO, offset: int, size: int) -> tuple[Record, int] | None:
    """The record at ``offset`` (where ``f`` stands) of a file of ``size`` bytes, if it is whole."""
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    magic, crc, klen, plen = HEADER.unpack(head)
    # a damaged length must not make the reader allocate more than the file holds
    if magic != MAGIC or klen > 1 << 24 or offset + HEADER.size + klen + plen > size:
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


def read_records(path: str | os.PathLike[str], start: int = 0, *, resync: bool = False,
                 skipped: list[tuple[int, int]] | None = None) -> Iterator[Record]:
    """Yield the valid records of ``path`` from byte ``start``; a missing file yields nothing.

    ``resync``: past an invalid record, look for the next valid one instead of stopping; each damaged
    region that a valid record follows is appended to ``skipped`` as (offset, length). A torn tail (no
    valid record after it) is not damage: it is where the next writer appends."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size  # a follower re-reads: records appended later are read then
        f.seek(start)
        offset = start
        while True:
            got = _read_one(f, offset, size)
            if got is None:
                if not resync:
                    return
                found = _next_valid(f, offset + 1, size)
                if found is None:
                    return
                if skipped is not None:
                    skipped.append((offset, found[0].offset - offset))
            record, offset = got if got is not None else found
            f.seek(offset)
            yield record


def read_keys(path: str | os.PathLike[str], start: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    """(key, end offset) of each record from byte ``start``, payloads skipped and unchecked: a cheap
    look at a file another process is appending to (progress counts), never a way to read results."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        offset = start
        while offset + HEADER.size <= size:
            f.seek(offset)
            magic, _, klen, plen = HEADER.unpack(f.read(HEADER.size))
            end = offset + HEADER.size + klen + plen
            if magic != MAGIC or klen > 1 << 16 or end > size:
                return
            try:
                key = json.loads(f.read(klen))
            except ValueError:
                return
            yield key, end
            offset = end


_SCAN_BLOCK = 1 << 20


def _next_valid(f: BinaryIO, offset: int, size: int) -> tuple[Record, int] | None:
    """The first whole record that starts at or after ``offset`` (a magic whose record checks out)."""
    while True:
        f.seek(offset)
        block = f.read(_SCAN_BLOCK + len(MAGIC) - 1)
        if len(block) < HEADER.size:
            return None
        at = block.find(MAGIC)
        while at != -1:
            f.seek(offset + at)
            got = _read_one(f, offset + at, size)
            if got is not None:
                return got
            at = block.find(MAGIC, at + 1)
        offset += _SCAN_BLOCK


def read_at(path: str | os.PathLike[str], offset: int) -> Record:
    """Read the one record that starts at ``offset`` (as recorded in an index)."""
    with open(path, "rb") as f:
        f.seek(offset)
        got = _read_one(f, offset, os.fstat(f.fileno()).st_size)
    if got is None:
        raise ValueError(f"no valid record at offset {offset} of {path}")
    return got[0]


def valid_length(path: str | os.PathLike[str]) -> int:
    """Where the next record must be written after a crash: past the last whole record (a damaged
    region before it is kept, and skipped by readers, rather than cut off with everything after it)."""
    end = 0
    for rec in read_records(path, resync=True):
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
