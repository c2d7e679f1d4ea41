"""A progress bar of a pool's maps on the terminal (tasks done of total; jobs running, pending, failed
and resubmitted; ETA), drawn with ``rich`` by a small thread that polls :meth:`Engine.progress`.

Shown only when stderr is a terminal (or ``progress=True``), and only for maps still running after
``delay`` seconds: short maps and non-interactive runs stay quiet.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from poolparty.engine.handle import BatchHandle


def wanted(option: bool | None, stream: TextIO | None = None) -> bool:
    """``progress=None`` (default): on when ``stream`` (stderr) is a terminal; True/False force it."""
    if option is not None:
        return bool(option)
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def job_counts(snap: dict[str, int]) -> dict[str, int]:
    """Jobs (chunks) by state from an :meth:`Engine.progress` snapshot."""
    running = snap.get("chunks_running", 0)
    return {"running": running,
            "pending": snap.get("chunks_waiting", 0) + snap.get("chunks_queued", 0) - running,
            "failed": snap.get("chunks_failed", 0), "resubmitted": snap.get("resubmissions", 0)}


class ProgressBar:
    """One bar per pool, covering the maps being tracked; it closes when they have all finished."""

    def __init__(self, snapshot: Callable[[], dict[str, int]], label: str, *, delay: float = 1.0,
                 interval: float = 0.25, stream: TextIO | None = None):
        self._snapshot = snapshot
        self.label = label
        self.delay = delay
        self.interval = interval
        self._stream = stream
        self._lock = threading.Lock()
        self._handles: list[BatchHandle] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, handle: BatchHandle) -> None:
        """Show ``handle``'s map (starts the drawing thread if it is not running)."""
        with self._lock:
            self._handles.append(handle)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="poolparty-progress", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop drawing now (terminate, Ctrl-C); the last state stays on screen."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- the drawing thread --------------------------------------------------------------------
    def _pending(self, finished: int) -> tuple[bool, int, bool]:
        """(maps still running, tasks of tracked maps that ended, frozen). When none runs (or on stop) the
        thread ends; ``frozen``: a map ended with an error (terminate, Ctrl-C, give-up) or was abandoned
        unfinished, so the bar stays where it was instead of jumping to its end."""
        with self._lock:
            frozen = False
            for h in [h for h in self._handles if h.done()]:
                self._handles.remove(h)
                frozen |= h.error is not None
                finished += h.n_tasks
            if self._handles and not self._stop.is_set() and not frozen:
                return True, finished, False
            frozen |= bool(self._handles)
            self._handles.clear()
            self._thread = None  # the next track() starts a new bar
            return False, finished, frozen

    def _run(self) -> None:
        started = time.monotonic()
        bar: Any = None
        finished = 0
        try:
            while True:
                self._stop.wait(self.interval)
                busy, finished, frozen = self._pending(finished)
                if frozen or (bar is None and not busy):
                    return  # the last state stays on screen
                if bar is None and time.monotonic() - started < self.delay:
                    continue
                if bar is None:
                    bar = _RichBar(self.label, self._stream)
                snap = self._snapshot()
                total = snap.get("tasks", 0) + finished
                done = snap.get("tasks_done", 0) + finished
                bar.update(done, total, job_counts(snap))
                if not busy:
                    return
        finally:
            if bar is not None:
                bar.close()


class _RichBar:
    """The drawing itself (rich is imported only when a bar is shown)."""

    def __init__(self, label: str, stream: TextIO | None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        console = Console(file=stream) if stream is not None else Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
            TextColumn("{task.fields[jobs]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, auto_refresh=False, transient=False)
        self.task = self.progress.add_task(label, total=None, jobs="")
        self.progress.start()

    def update(self, done: int, total: int, jobs: dict[str, int]) -> None:
        text = " ".join(f"{name} {n}" for name, n in jobs.items())
        self.progress.update(self.task, completed=done, total=max(total, done) or None, jobs=f"| {text} |")
        self.progress.refresh()

    def close(self) -> None:
        self.progress.stop()
