"""Capturing a claimed chunk's output: file descriptors 1 and 2 pointed at a node-local anonymous file
while the chunk runs, so its output goes into its part file instead of the claiming job's log."""
from __future__ import annotations

import os
import sys

from poolparty.store.results import LOG_TAIL_BYTES


class OutputCapture:
    """Points file descriptors 1 and 2 at an anonymous temporary file (node-local, no name in the shared
    directory) for the duration of a block; ``data`` is what was written (its last MiB)."""

    def __init__(self, active: bool):
        self.active = active
        self.data = b""

    def __enter__(self) -> "OutputCapture":
        if self.active:
            import tempfile

            sys.stdout.flush()
            sys.stderr.flush()
            try:
                self._tmp = tempfile.TemporaryFile()
                self._saved = (os.dup(1), os.dup(2))
            except OSError as e:  # no temporary space, or no stdout: the output goes to this job's log
                print(f"poolparty.node.worker: cannot capture a claimed chunk's output ({e})", file=sys.stderr)
                self.active = False
                return self
            os.dup2(self._tmp.fileno(), 1)
            os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.active:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        size = self._tmp.seek(0, os.SEEK_END)
        self._tmp.seek(max(0, size - LOG_TAIL_BYTES))
        self.data = self._tmp.read()
        self._tmp.close()
