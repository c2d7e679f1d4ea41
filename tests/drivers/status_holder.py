"""A driver caught in the middle of refreshing the user's status snapshot: it holds the snapshot's lock
while its per-user query hangs (as a stuck squeue would), until the test stops or kills it."""
import argparse
import sys
import time
from pathlib import Path

from poolparty.queues import make_queue
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.shared_status import SharedStatus


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queue", required=True)
    p.add_argument("--state-dir", required=True)
    a = p.parse_args()
    queue = make_queue(a.queue, SchedulerCLI(timeout=30))

    def hung_query():
        print("HOLDING", flush=True)
        time.sleep(600)
        return {}

    queue.query_user = hung_query  # type: ignore[method-assign]
    SharedStatus(queue, Path(a.state_dir)).query("pp-holder")


if __name__ == "__main__":
    sys.exit(main())
