"""On-disk state of a fake cluster: paths, the flock-guarded JSON state and append-only logs."""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

State = dict[str, Any]


class StatePaths:
    """Well-known file locations inside a fake cluster's STATE_DIR."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir)
        self.state = self.root / "state.json"
        self.lock = self.root / "state.lock"
        self.controls = self.root / "controls.json"
        self.calls = self.root / "calls.jsonl"
        self.archive = self.root / "archive.jsonl"
        self.accounting = self.root / "accounting.jsonl"
        self.spool = self.root / "spool"
        self.bin = self.root / "bin"
        self.daemon_info = self.root / "daemon.json"
        self.daemon_log = self.root / "daemon.log"

    def job_spool(self, job_id: int) -> Path:
        """Directory holding the copied script and environment of one submission."""
        return self.spool / f"job{job_id:05d}"


@contextmanager
def locked(paths: StatePaths) -> Iterator[None]:
    """Hold the cluster-wide exclusive lock (fcntl.flock on state.lock)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path: Path, default: Any) -> Any:
    """Parse a JSON file, returning `default` if it does not exist."""
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return default


def write_json_atomic(path: Path, data: Any) -> os.stat_result:
    """Replace `path` atomically with `data` as JSON; returns the new file's stat."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
    os.replace(tmp, path)
    return os.stat(path)


def load_state(paths: StatePaths) -> State:
    """Read state.json (caller must hold the lock)."""
    return read_json(paths.state, {})


def save_state(paths: StatePaths, state: State) -> os.stat_result:
    """Write state.json (caller must hold the lock)."""
    return write_json_atomic(paths.state, state)


def read_state(paths: StatePaths) -> State:
    """Snapshot of the state under the lock, for read-only commands."""
    with locked(paths):
        return load_state(paths)


@contextmanager
def transaction(paths: StatePaths) -> Iterator[State]:
    """Lock, load, let the caller mutate, then save the state."""
    with locked(paths):
        state = load_state(paths)
        yield state
        save_state(paths, state)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file (missing file: empty list; torn last line ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def now() -> float:
    """Wall-clock time used for all job timestamps."""
    return time.time()
