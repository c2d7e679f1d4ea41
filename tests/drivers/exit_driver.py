"""A driver that submits work and leaves the interpreter without waiting for it or shutting down:
``finish`` ends normally (the work is finished first, as concurrent.futures does), ``raise`` ends by an
uncaught exception and ``sigterm`` waits to be killed (the work is cancelled: no orphaned job)."""
import argparse
import json
import os
import time
from pathlib import Path

import poolparty
from poolparty.queues import make_queue
from poolparty.queues.cli import SchedulerCLI


def leave_marker(marker_dir, name, seconds):
    Path(marker_dir, f"started-{name}").touch()
    time.sleep(seconds)
    Path(marker_dir, f"done-{name}").touch()
    return name


def adapter(a: argparse.Namespace):
    """One adapter per pool (a pool closes its own)."""
    queue = make_queue(a.queue, SchedulerCLI(timeout=30, backoff_base=0.2))
    for name, value in json.loads(a.timing).items():
        setattr(queue, name, value)
    return queue


p = argparse.ArgumentParser()
p.add_argument("how", choices=["finish", "raise", "sigterm"])
p.add_argument("--queue", required=True)
p.add_argument("--markers", required=True)
p.add_argument("--work-root", required=True)
p.add_argument("--seconds", type=float, default=1.0)
p.add_argument("--timing", default="{}", help="adapter attributes as JSON (short grace periods)")
a = p.parse_args()
# module-level names, as in a script: a pool that is only a local of a function that returns is
# garbage-collected, and then terminated, as multiprocessing's is
ex = poolparty.Executor(2, queue=adapter(a), work_root=a.work_root, polling_interval=0.5)
pool = poolparty.Pool(2, queue=adapter(a), work_root=a.work_root, polling_interval=0.5)
print(f"POOLS {ex.engine.name} {ex.work_dir} {pool.engine.name} {pool.work_dir}", flush=True)
for i in range(2):
    ex.submit(leave_marker, a.markers, f"submit-{i}", a.seconds)
pool.apply_async(leave_marker, (a.markers, "apply", a.seconds))
if a.how != "finish":  # finish: no shutdown, no close, no wait
    while not list(Path(a.markers).glob("started-*")):
        time.sleep(0.05)
    if a.how == "raise":
        raise RuntimeError("the script fails while its work runs")
    print(f"WAITING {os.getpid()}", flush=True)
    time.sleep(600)
