"""``run.json``: the run's recorded options, written by the driver when it takes the run and read by
``poolparty status|cancel|clean|resume`` (to find and rerun the jobs) and by the worker (the result
size limit). Stdlib only: the worker imports this."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from poolparty.store.atomic import read_json, write_json
from poolparty.store.layout import RUN_INFO_FILE

FORMAT = 1


def write_run_info(run: Path, *, job_name: str, queue: str, python: str, max_running: int, array: bool,
                   max_resubmissions: int, resources: dict[str, Any], max_result_size: int | None) -> None:
    """What the CLI needs to find the run's jobs and submit its batches again, without the program."""
    import socket  # driver side: the worker never needs it

    write_json(run / RUN_INFO_FILE, {
        "format": FORMAT, "job_name": job_name, "queue": queue, "python": python, "max_running": max_running,
        "array": array, "max_resubmissions": max_resubmissions, "resources": resources,
        "max_result_size": max_result_size, "started": time.time(), "host": socket.gethostname(),
        "pid": os.getpid()})


def read_run_info(run: Path) -> dict[str, Any]:
    """The run's ``run.json``; empty when there is none (a run made before run.json existed) or it is
    unreadable."""
    try:
        info = read_json(run / RUN_INFO_FILE)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def read_result_limit(run: Path) -> int | None:
    """The ``max_result_size`` recorded in the run's ``run.json`` (None: no limit, or no run.json)."""
    value = read_run_info(run).get("max_result_size")
    return value if isinstance(value, int) and value > 0 else None
