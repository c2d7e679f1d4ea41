"""Every name poolparty gives a file or directory in a work_dir, built and parsed here and nowhere else.

Layout (file count is O(1) in the number of tasks; ``incoming/`` holds only files of running chunks)::

    <run>/                 0700, one per pool, unique name (no makedirs race between pools)
      lock                 flock held by the live driver (see store.run_lock)
      job.sh               fixed batch script (store.job_script): exec "$@", no shell string built from user data
      run.json             the run's options, for the CLI and the worker (see store.run_info)
      local_queue.json     the local queue's workers (local queue only)
      warm/                a.<shape>.<job>: a warm element looking for work (mtime: its heartbeat);
                           o.<shape>.<batch>.<sub>: chunks the driver offers to warm elements (JSON)
      batches/<NNNN>/      one per map
        meta.json  chunks.rec  journal.rec  results.rec  logs.rec (logs.rec: once a job wrote output)
        usage.rec          what each worker measured of itself (CPU, peak memory, wall), for the report
        incoming/          c<chunk>.s<submission>.part|.done written by workers, j<element>.log job logs

Stdlib only, and nothing costly: the worker on the node imports this.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

# -- the run directory ---------------------------------------------------------------------------
RUN_DIR_PREFIX = "run"  # a fresh run directory under a work_root: run-<time>-<host>-<pid>-<random>
LOCK_FILE = "lock"
JOB_SCRIPT_FILE = "job.sh"
RUN_INFO_FILE = "run.json"
LOCAL_QUEUE_FILE = "local_queue.json"
BATCHES_DIR = "batches"
WARM_DIR = "warm"  # warm elements' adverts and the driver's offers (linger)

#: what poolparty puts in a run directory: all it removes (a user's own files there are kept)
RUN_FILES = (BATCHES_DIR, LOCK_FILE, JOB_SCRIPT_FILE, LOCAL_QUEUE_FILE, RUN_INFO_FILE, WARM_DIR)

# -- a batch directory ---------------------------------------------------------------------------
META_FILE = "meta.json"
CHUNKS_FILE = "chunks.rec"
JOURNAL_FILE = "journal.rec"
RESULTS_FILE = "results.rec"
LOGS_FILE = "logs.rec"
USAGE_FILE = "usage.rec"
INCOMING_DIR = "incoming"

PART, DONE = ".part", ".done"
CHECKPOINT = ".ckpt"


class BatchPaths:
    """The paths of one batch directory (``<run>/batches/<NNNN>``)."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = path / META_FILE
        self.chunks = path / CHUNKS_FILE
        self.journal = path / JOURNAL_FILE
        self.results = path / RESULTS_FILE
        self.logs = path / LOGS_FILE
        self.usage = path / USAGE_FILE
        self.incoming = path / INCOMING_DIR

    @property
    def run(self) -> Path:
        return run_of_batch(self.path)


def batch_dir_name(number: int) -> str:
    """``7`` -> ``"0007"``."""
    return f"{number:04d}"


def parse_batch_dir_name(name: str) -> int | None:
    """The batch number a directory name under ``batches/`` spells, else None."""
    return int(name) if name.isdigit() else None


def batch_dir(run: Path, number: int) -> Path:
    return run / BATCHES_DIR / batch_dir_name(number)


def run_of_batch(batch: Path) -> Path:
    """The run directory that holds ``batch`` (``<run>/batches/<NNNN>``)."""
    return batch.parent.parent


def relative_batch_dir(number: int) -> str:
    """``batches/0007``: how messages name a batch inside its run."""
    return f"{BATCHES_DIR}/{batch_dir_name(number)}"


def local_queue_state(run: Path) -> Path:
    return run / LOCAL_QUEUE_FILE


#: every pool's job name starts so: a per-user status query keeps the jobs so named (poolparty's own)
JOB_NAME_PREFIX = "pp-"


def job_name(work_dir: str | os.PathLike[str]) -> str:
    """The scheduler job name of every job of the run in ``work_dir``: stable, so a resumed run (or
    ``poolparty cancel``) finds its jobs by name."""
    import hashlib  # driver side: the worker never needs it

    return JOB_NAME_PREFIX + hashlib.sha1(str(Path(work_dir).resolve()).encode()).hexdigest()[:12]


# -- part and done files in incoming/ ------------------------------------------------------------
class PartName(NamedTuple):
    chunk: int
    sub: int


def part_name(chunk: int, sub: int, *, done: bool = False) -> str:
    """``c<chunk>.s<sub>.part`` (or ``.done``): one per chunk and submission, written by one worker."""
    return f"c{chunk}.s{sub}{DONE if done else PART}"


def parse_part_name(name: str) -> PartName | None:
    """The chunk and submission a part or done file name spells; None for any other name."""
    if name[:1] != "c" or not name.endswith((PART, DONE)):
        return None
    try:
        chunk, sub = (int(x[1:]) for x in name[:-5].split("."))
    except ValueError:
        return None
    return PartName(chunk, sub)


def part_path(incoming: Path, chunk: int, sub: int) -> Path:
    return incoming / part_name(chunk, sub)


def done_path(part: Path) -> Path:
    """The name a part file is published under once its chunk has run."""
    return part.with_suffix(DONE)


def is_done_name(name: str) -> bool:
    return name.endswith(DONE)


def chunk_file_names(names: list[str], chunk: int) -> list[str]:
    """The part and done files of ``chunk`` among ``names`` (a listing of incoming/), done ones first."""
    prefix = f"c{chunk}."
    mine = [n for n in names if n.startswith(prefix) and n.endswith((DONE, PART))]
    mine.sort(key=lambda n: (not n.endswith(DONE), n))
    return mine


# -- task checkpoints in incoming/ ---------------------------------------------------------------
def checkpoint_name(task: int) -> str:
    """``t<task>.ckpt``: the state a task saved (poolparty.checkpoint), one per task, replaced whole."""
    return f"t{task}{CHECKPOINT}"


def checkpointed_tasks(names: list[str]) -> set[int]:
    """The tasks with a saved state among ``names`` (a listing of incoming/)."""
    return {int(n[1:-len(CHECKPOINT)]) for n in names
            if n[:1] == "t" and n.endswith(CHECKPOINT) and n[1:-len(CHECKPOINT)].isdigit()}


# -- job logs in incoming/ -----------------------------------------------------------------------
def job_log_name(element: str) -> str:
    """The scheduler's log of one job or array element. Adapters render their ``-o`` pattern from it
    with their placeholder (``job_log_name("%A_%a")``), so pattern and reader agree."""
    return f"j{element}.log"


# -- warm elements and offers in warm/ -----------------------------------------------------------
ADVERT, OFFER = "a", "o"


def warm_dir(run: Path) -> Path:
    return run / WARM_DIR


def advert_name(shape: str, job: str) -> str:
    """``a.<shape>.<job token>``: one per lingering element (shape and token are alphanumeric)."""
    return f"{ADVERT}.{shape}.{job}"


def offer_name(shape: str, batch: int, sub: int) -> str:
    """``o.<shape>.<batch>.<sub>``: the chunks of submission ``sub`` of ``batch`` offered to warm elements."""
    return f"{OFFER}.{shape}.{batch}.{sub}"


class OfferName(NamedTuple):
    shape: str
    batch: int
    sub: int


def parse_offer_name(name: str) -> OfferName | None:
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != OFFER or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return OfferName(parts[1], int(parts[2]), int(parts[3]))


def is_advert_of(name: str, shape: str) -> bool:
    return name.startswith(f"{ADVERT}.{shape}.")
