"""Logs on the Snakemake side: the core's warnings in Snakemake's log, a failed job's log file handed
to Snakemake (``aux_logs``), and the retention of old log and run directories."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Optional

#: per-run directories of failed jobs' logs, under the workflow's working directory
LOG_DIR = Path(".snakemake") / "poolparty_logs"


def remove_old_logs(log_root: Path, work_root: Path, days: float) -> list:
    """Retention: delete per-run log directories (``log_root/*``) and run directories
    (``work_root/run-*``) older than ``days``, except those a live pool holds (its ``lock`` flock).
    ``days <= 0`` keeps everything. Returns what was deleted."""
    if not days or days <= 0:
        return []
    import shutil

    from poolparty.store.layout import RUN_DIR_PREFIX
    from poolparty.store.run_lock import holder

    limit = time.time() - days * 86400
    removed = []
    for root, pattern in ((log_root, "*"), (work_root, f"{RUN_DIR_PREFIX}-*")):
        try:
            entries = list(root.glob(pattern))
        except OSError:
            continue
        for p in entries:
            try:
                if not p.is_dir() or p.stat().st_mtime >= limit:
                    continue
                if holder(p) is not None:
                    continue  # a live pool: leave its directory alone
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            except OSError:
                continue
    return removed


class SnakemakeLogBridge(logging.Handler):
    """The core's warnings and errors (resubmissions, give-ups, kept work directories) in Snakemake's log."""

    def __init__(self, target: Any):
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            (self.target.error if record.levelno >= logging.ERROR else self.target.warning)(msg)
        except Exception:
            pass


def write_job_log(run_logs: Path, job: Any, msg: str, text: Optional[str], batches: str) -> Path:
    """A failed job's log for Snakemake's error report: the reason, then the job log the core kept.
    Named per rule, job and attempt so that a retry does not overwrite the first attempt's log."""
    name = f"{_safe(job.name)}.{_safe(job.jobid)}.attempt{getattr(job, 'attempt', 1)}.log"
    run_logs.mkdir(parents=True, exist_ok=True)
    path = run_logs / name
    header = (f"# {msg.strip()}\n# Snakemake job {job.jobid} ({job.name}), poolparty batch directory "
              f"{batches} (kept after a failure)\n")
    body = text if text is not None else "(poolparty: no scheduler log was stored for this job)\n"
    path.write_text(header + body, errors="replace")
    return path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(text))[:120] or "job"
