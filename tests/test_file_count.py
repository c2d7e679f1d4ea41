"""Shared filesystems die of inodes: the work_dir's file count does not grow with the number of tasks."""
import os
import threading

import poolparty


def count_files(root) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(root))


def test_ten_thousand_tasks_stay_under_fifty_files(tmp_path):
    peak = 0
    stop = threading.Event()
    with poolparty.Pool(queue="local", max_running=2, work_root=tmp_path, keep_work_dir=True) as pool:
        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, count_files(pool.work_dir))
                stop.wait(0.01)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        result = pool.map(abs, range(-10_000, 0), chunksize=100)  # 100 chunks, run back to back (claims)
        stop.set()
        t.join()
        end = count_files(pool.work_dir)
    assert result == list(range(10_000, 0, -1))
    assert peak < 50 and end < 50, (peak, end)


def test_a_quiet_map_keeps_five_files_per_batch(tmp_path):
    """Index and function live inside chunks.rec; empty logs of successful jobs are not stored; what the
    workers measured of themselves (for the efficiency report) is one more file, usage.rec, whatever the
    number of chunks."""
    with poolparty.Pool(queue="local", max_running=2, work_root=tmp_path, keep_work_dir=True) as pool:
        assert pool.map(abs, range(-20, 0), chunksize=5) == list(range(20, 0, -1))
        batch = pool.work_dir / "batches" / "0001"
        files = sorted(p.name for p in batch.iterdir() if p.is_file())
        incoming = list((batch / "incoming").iterdir())
    assert files == ["chunks.rec", "journal.rec", "meta.json", "results.rec", "usage.rec"], files
    assert incoming == []
