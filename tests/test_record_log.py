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
