"""Files replaced whole (write a temporary file, then rename): a reader sees the old file or the new
one, never a half-written one. run.json, meta.json, job.sh and the local queue's state are written so."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    """Write then rename, so a reader sees the old file or the whole new one."""
    import tempfile  # driver side: the worker on a node never needs it

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=1, sort_keys=True).encode())
