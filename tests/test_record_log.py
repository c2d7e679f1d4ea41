"""The framed record format survives torn writes: a reader sees a valid prefix, never garbage."""
import os

from poolparty.store import records


def test_roundtrip_and_offsets(tmp_path):
    path = tmp_path / "r.rec"
    with records.RecordWriter(path) as w:
        a = w.append({"task": 1}, b"one")
        b = w.append({"task": 2}, b"two" * 1000)
    recs = list(records.read_records(path))
    assert [r.key["task"] for r in recs] == [1, 2]
    assert records.read_at(path, b).payload == b"two" * 1000
    assert records.read_at(path, a).key == {"task": 1}


def test_torn_tail_is_ignored_and_truncated_by_next_writer(tmp_path):
    path = tmp_path / "r.rec"
    with records.RecordWriter(path) as w:
        w.append({"task": 1}, b"x" * 100)
        w.append({"task": 2}, b"y" * 100)
    size = path.stat().st_size
    with open(path, "r+b") as f:  # a writer killed mid-record
        f.truncate(size - 7)
    assert [r.key["task"] for r in records.read_records(path)] == [1]
    with records.RecordWriter(path) as w:
        w.append({"task": 3}, b"z")
    assert [r.key["task"] for r in records.read_records(path)] == [1, 3]


def test_corrupted_payload_stops_reading(tmp_path):
    path = tmp_path / "r.rec"
    with records.RecordWriter(path) as w:
        w.append({"task": 1}, b"aaaa")
        w.append({"task": 2}, b"bbbb")
        w.append({"task": 3}, b"cccc")
    with open(path, "r+b") as f:  # flip one byte of the last record's payload
        f.seek(os.path.getsize(path) - 2)
        f.write(b"\xff")
    assert [r.key["task"] for r in records.read_records(path)] == [1, 2]


def test_missing_file_reads_empty(tmp_path):
    assert list(records.read_records(tmp_path / "none.rec")) == []


def _write_some(path, rng, n):
    written = []
    with records.RecordWriter(path) as w:
        for i in range(n):
            key = {"task": i, "ok": rng.random() < 0.8}
            payload = rng.randbytes(rng.choice([0, 1, 7, 100, 3000]))
            w.append(key, payload)
            written.append((key, payload))
    return written


def test_a_damaged_region_in_the_middle_is_skipped_and_reported(tmp_path):
    """One flipped byte used to lose every record after it: readers stopped there, and the next writer
    truncated the file at that point."""
    path = tmp_path / "r.rec"
    with records.RecordWriter(path) as w:
        offsets = [w.append({"task": i}, bytes([i]) * 50) for i in range(5)]
    with open(path, "r+b") as f:  # flip a byte inside record 1's payload
        f.seek(offsets[2] - 10)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    assert [r.key["task"] for r in records.read_records(path)] == [0]  # a tail-follower stops
    skipped = []
    assert [r.key["task"] for r in records.read_records(path, resync=True, skipped=skipped)] == [0, 2, 3, 4]
    assert skipped == [(offsets[1], offsets[2] - offsets[1])]
    with records.RecordWriter(path) as w:  # the next writer keeps records 2-4 and appends after them
        w.append({"task": 5}, b"")
    assert [r.key["task"] for r in records.read_records(path, resync=True)] == [0, 2, 3, 4, 5]


def test_fuzz_truncations_and_bit_flips_never_raise_and_never_invent_a_record(tmp_path):
    import random

    for seed in range(300):
        rng = random.Random(seed)
        path = tmp_path / f"f{seed}.rec"
        written = _write_some(path, rng, rng.randint(1, 12))
        data = bytearray(path.read_bytes())
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(["flip", "truncate", "zero", "garbage"])
            if not data:
                break
            if kind == "flip":
                at = rng.randrange(len(data))
                data[at] ^= 1 << rng.randrange(8)
            elif kind == "truncate":
                del data[rng.randrange(len(data)):]
            elif kind == "zero":
                at = rng.randrange(len(data))
                n = rng.randint(1, 64)
                data[at:at + n] = bytes(len(data[at:at + n]))
            else:
                at = rng.randrange(len(data))
                data[at:at] = rng.randbytes(rng.randint(1, 40))
        path.write_bytes(bytes(data))
        for resync in (False, True):
            got = [(r.key, r.payload) for r in records.read_records(path, resync=resync)]
            positions = [written.index(g) for g in got]  # ValueError: a record that was never written
            assert positions == sorted(set(positions)), (seed, resync)
        length = records.valid_length(path)
        assert 0 <= length <= len(data)
