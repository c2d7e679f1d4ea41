"""Chunks -> array submissions within the scheduler's index limit (MaxArraySize, max_aj_tasks)."""
from poolparty.queues.arrays import compress_indices, layout_array


def test_unlimited_is_one_part():
    parts = layout_array(range(1000), first_index=0, max_index=None)
    assert len(parts) == 1 and parts[0].chunks == list(range(1000))


def test_split_by_max_array_size():
    # MaxArraySize=101 -> indices 0..100
    parts = layout_array(range(1000), first_index=0, max_index=100)
    assert len(parts) == 10
    assert sorted(c for p in parts for c in p.chunks) == list(range(1000))
    assert all(0 <= i <= 100 for p in parts for i in p.indices)


def test_scattered_resubmission_stays_in_range():
    chunks = [3, 250, 251, 999]
    parts = layout_array(chunks, first_index=0, max_index=100)
    assert sorted(c for p in parts for c in p.chunks) == chunks
    assert all(0 <= i <= 100 for p in parts for i in p.indices)


def test_sge_one_based_and_contiguous():
    parts = layout_array([0, 1, 2, 5, 6, 9], first_index=1, max_index=75000, contiguous=True)
    assert [p.chunks for p in parts] == [[0, 1, 2], [5, 6], [9]]
    assert all(min(p.indices) >= 1 for p in parts)
    for p in parts:
        assert list(p.indices) == list(range(p.indices[0], p.indices[-1] + 1))


def test_compress():
    assert compress_indices([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert compress_indices([4]) == "4"
