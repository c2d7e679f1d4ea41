"""The faulty cluster: cancels 5% of the running array elements of one benchmark run.

    python cluster_faults.py --names-file F --squeue /usr/bin/squeue --scancel /usr/bin/scancel --log OUT

Every 0.5 s it lists the RUNNING jobs/array elements (``squeue --array``) whose job name is in
``--names-file`` (re-read every time: some systems pick their job name only when they start). Each
element gets a sequence number the first time it is seen running; elements number 10, 30, 50, ...
(every ``--every``-th, i.e. 5%) are cancelled with ``scancel <id>_<idx>`` once they have been running
for ``--delay`` seconds, so they die mid-chunk. A system that resubmits gets new element ids, which
count as new sightings. Runs until SIGTERM; appends one JSON line per cancel to ``--log``.

Uses the real scheduler commands (absolute paths): its calls are not counted against the system.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names-file", required=True)
    p.add_argument("--squeue", required=True)
    p.add_argument("--scancel", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--first", type=int, default=10, help="sequence number of the first victim")
    p.add_argument("--delay", type=float, default=0.5)
    a = p.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    seen: dict[str, tuple[int, float]] = {}  # element -> (sequence number, first seen running)
    cancelled: set[str] = set()
    while not stop:
        try:
            names = {line.strip() for line in open(a.names_file) if line.strip()}
        except FileNotFoundError:
            names = set()
        if names:
            out = subprocess.run([a.squeue, "--noheader", "--array", "--states=RUNNING", "--format=%i|%j"],
                                 capture_output=True, text=True).stdout
            now = time.monotonic()
            for line in out.splitlines():
                element, _, name = line.strip().partition("|")
                if name not in names or element in cancelled:
                    continue
                if element not in seen:
                    seen[element] = (len(seen), now)
                seq, since = seen[element]
                if seq % a.every == a.first % a.every and now - since >= a.delay:
                    rc = subprocess.run([a.scancel, element], capture_output=True, text=True).returncode
                    cancelled.add(element)
                    with open(a.log, "a") as f:
                        f.write(json.dumps({"t": time.time(), "element": element, "name": name, "seq": seq,
                                            "rc": rc}) + "\n")
        time.sleep(0.5)
    with open(a.log, "a") as f:
        f.write(json.dumps({"t": time.time(), "seen": len(seen), "cancelled": len(cancelled)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
