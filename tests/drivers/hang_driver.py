"""A driver for tests that SIGKILL it: one task on the local queue (walltime 4 s) that sleeps forever."""
import argparse
import os
import sys
import time
from pathlib import Path

import poolparty


def sleep_forever(pid_file):
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    while True:
        time.sleep(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work-dir", required=True)
    p.add_argument("--pid-file", required=True)
    a = p.parse_args()
    try:
        # a walltime kill is bounded by max_walltime_escalations, not max_resubmissions (docs/walltime.md)
        retry = poolparty.RetryPolicy(max_resubmissions=1, max_walltime_escalations=1)
        with poolparty.Pool(queue="local", walltime=4, retry=retry, work_dir=a.work_dir,
                            polling_interval=0.5) as pool:
            print("RESULT", pool.map(sleep_forever, [a.pid_file]), flush=True)
    except poolparty.RetryLimitExceeded as e:
        print("RETRY_LIMIT", type(e).__name__, flush=True)


if __name__ == "__main__":
    sys.exit(main())
