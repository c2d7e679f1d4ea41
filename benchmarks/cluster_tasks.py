"""The work every system runs on the nodes (importable there: the benchmark puts this directory on
PYTHONPATH, which every system exports to its jobs).

A task ``(i, seconds, cpu)`` holds its slot for ``seconds`` and returns ``expected(i)``: with ``cpu``
false it sleeps (the default; see README: 16 advertised CPUs sit on 2 real cores), with ``cpu`` true
it burns ``seconds`` of its own CPU time. A chunk is a list of tasks run in order.

``python cluster_tasks.py floor OUT_DIR N CHUNKSIZE SECONDS CPU IMPORT`` is the hand-written floor's array
element: it computes chunk ``$SLURM_ARRAY_TASK_ID`` (or SGE's 1-based ``$SGE_TASK_ID``) and writes one
line per task, ``i result``, to ``OUT_DIR/<chunk>.txt`` (written to a temporary name, then renamed).
No pickling, no result store, no journal: the least any system can do. ``IMPORT`` is ``-``, or a module
the element imports first, or a comma-separated list of them (the ``floor+imports`` diagnosis: the floor
plus poolparty's worker start-up; ``floor+lean``: plus what a lean worker would need).
"""
from __future__ import annotations

import os
import sys
import time

Task = tuple[int, float, bool]


def expected(i: int) -> int:
    return i * i + 7


def hold(seconds: float, cpu: bool) -> None:
    if not cpu:
        time.sleep(seconds)
        return
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for k in range(1000):
            x += k


def task(item: Task) -> int:
    i, seconds, cpu = item
    hold(seconds, cpu)
    return expected(i)


def run_chunk(items: list[Task]) -> list[int]:
    """One chunk, for the systems that have no chunking of their own (submitted as one item)."""
    return [task(x) for x in items]


def make_items(n: int, seconds: float, cpu: bool) -> list[Task]:
    return [(i, seconds, cpu) for i in range(n)]


def make_chunks(items: list[Task], chunksize: int) -> list[list[Task]]:
    return [items[k:k + chunksize] for k in range(0, len(items), chunksize)]


def floor_element(out_dir: str, n: int, chunksize: int, seconds: float, cpu: bool) -> None:
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        chunk = int(os.environ["SLURM_ARRAY_TASK_ID"])
    else:
        chunk = int(os.environ["SGE_TASK_ID"]) - 1
    lines = []
    for i in range(chunk * chunksize, min(n, (chunk + 1) * chunksize)):
        lines.append(f"{i} {task((i, seconds, cpu))}\n")
    tmp = os.path.join(out_dir, f".{chunk}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.rename(tmp, os.path.join(out_dir, f"{chunk}.txt"))


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "floor":
        for module in sys.argv[7].split(","):
            if module != "-":
                __import__(module)
        floor_element(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6] == "1")
    else:
        sys.exit(__doc__)
