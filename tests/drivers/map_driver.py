"""A driver process for tests that signal or kill it: maps slow tasks that leave marker files."""
import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import poolparty
from poolparty.queues import make_queue
from poolparty.queues.cli import SchedulerCLI


def slow_square(args):
    x, marker_dir, seconds = args
    Path(marker_dir, f"{x}-{uuid.uuid4().hex}").touch()
    time.sleep(seconds)
    Path(marker_dir, f"done-{x}-{uuid.uuid4().hex}").touch()
    return x * x


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queue", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--markers", required=True)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--max-running", type=int, default=2)
    p.add_argument("--timing", default="{}", help="adapter attributes as JSON (short grace periods)")
    p.add_argument("--exit-early", action="store_true", help="start the map, then leave the interpreter")
    a = p.parse_args()
    queue = make_queue(a.queue, SchedulerCLI(timeout=30, backoff_base=0.2))
    for name, value in json.loads(a.timing).items():
        setattr(queue, name, value)
    options = dict(queue=queue, max_running=a.max_running, work_dir=a.work_dir, polling_interval=1.0, verbose=True)
    if a.exit_early:  # no `with`: only the interpreter-exit hook can cancel the jobs
        pool = poolparty.Pool(**options)
        print(f"POOL {pool.engine.name}", flush=True)
        pool.map_async(slow_square, [(x, a.markers, a.seconds) for x in range(a.n)], chunksize=1)
        while not list(Path(a.markers).iterdir()):
            time.sleep(0.1)
        raise RuntimeError("the driver fails with work in flight")  # a normal exit would finish the work
    with poolparty.Pool(**options) as pool:
        print(f"POOL {pool.engine.name}", flush=True)
        result = pool.map(slow_square, [(x, a.markers, a.seconds) for x in range(a.n)], chunksize=1)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
