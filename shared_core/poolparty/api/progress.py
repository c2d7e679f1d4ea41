"""A one-line progress display of a pool's maps on the terminal: tasks done of total and the ETA, then,
as the width allows, a bar, the jobs running, pending, failed and resubmitted, and the time elapsed.
Which fields fit is decided here (:func:`layout`, pure); the drawing is rich's (live display, bar).

Drawn by a small thread that polls :meth:`Engine.progress` (tasks are counted as workers record them,
inside a job, through the work_dir: no scheduler call). Shown only when stderr is a terminal (or
``progress=True``), and only for maps still running after ``delay`` seconds: short maps and
non-interactive runs stay quiet. The line is laid out by :func:`render`, a pure function of the width.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
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
    """Jobs by state from an :meth:`Engine.progress` snapshot."""
    running = snap.get("chunks_running", 0)
    return {"running": running,
            "pending": snap.get("chunks_waiting", 0) + snap.get("chunks_queued", 0) - running,
            "failed": snap.get("chunks_failed", 0), "resubmitted": snap.get("resubmissions", 0)}


class TaskRate:
    """Tasks finished per second, measured over the last ``window`` seconds of completions (from the
    first task that finished: the wait in the queue before it is not a rate)."""

    def __init__(self, window: float = 60.0):
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        if done > 0 and (not self._samples or done != self._samples[-1][1]):
            self._samples.append((now, done))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def eta(self, now: float, done: int, total: int) -> float | None:
        """Seconds left at the measured rate; None until two completions were seen."""
        if total and done >= total:
            return 0.0
        if len(self._samples) < 2:
            return None
        t0, d0 = self._samples[0]
        rate = (done - d0) / max(now - t0, 1e-6)
        return (total - done) / rate if rate > 0 else None


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


#: what goes first when the line is too wide, in order (the count and the ETA never go)
DROP_ORDER = ("failed 0", "resubmitted 0", "long name", "elapsed", "pending", "percent", "resubmitted",
              "running", "name", "failed", "tasks word")
BAR_MIN, BAR_MAX = 10, 40


@dataclass(frozen=True)
class Line:
    """The progress line's parts for one width: ``head`` (the pool's name, maybe empty), a bar of
    ``bar`` cells (0: no bar) and ``tail`` (count, jobs, elapsed, ETA)."""

    head: str
    bar: int
    tail: str

    def text(self, done: int, total: int, fancy: bool = True) -> str:
        """The line as plain text (the bar drawn with block characters or ``#``/``-``)."""
        parts = [self.head] if self.head else []
        if self.bar:
            full = self.bar * min(done, total) // max(total, 1)
            on, off = ("\u2588", "\u2591") if fancy else ("#", "-")
            parts.append(on * full + off * (self.bar - full))
        return " ".join(parts + [self.tail])


def layout(width: int, name: str, done: int, total: int, jobs: dict[str, int], elapsed: float,
           eta: float | None) -> Line:
    """The line for a terminal ``width`` columns wide: fields are dropped in :data:`DROP_ORDER` until the
    rest and a bar of at least ``BAR_MIN`` fit (then the bar goes too)."""
    dropped: set[str] = set()
    for step in (None, *DROP_ORDER):
        if step is not None:
            dropped.add(step)
        line = _fit(name, done, total, jobs, elapsed, eta, dropped, width)
        if line.bar:
            return line
    return line


def render(width: int, name: str, done: int, total: int, jobs: dict[str, int], elapsed: float,
           eta: float | None, *, fancy: bool = True) -> str:
    """:func:`layout` as plain text."""
    return layout(width, name, done, total, jobs, elapsed, eta).text(done, total, fancy)


def _fit(name: str, done: int, total: int, jobs: dict[str, int], elapsed: float, eta: float | None,
         dropped: set[str], width: int) -> Line:
    """The line without ``dropped`` fields; its bar is 0 if a bar of ``BAR_MIN`` does not fit."""
    head = "" if "name" in dropped else (name if "long name" not in dropped else short_name(name))
    count = f"{done}/{total}" + ("" if "tasks word" in dropped else " tasks")
    if "percent" not in dropped:
        count = f"{100 * done // max(total, 1):3d}% {count}"
    shown = [f"{n} {state}" for state, n in jobs.items()
             if state not in dropped and not (n == 0 and f"{state} 0" in dropped)]
    tail = [count] + (["jobs: " + ", ".join(shown)] if shown else [])
    tail += ([] if "elapsed" in dropped else [f"{clock(elapsed)} elapsed"]) + [f"eta {clock(eta)}"]
    text = " | ".join(tail)
    room = width - 1 - len(" ".join(filter(None, [head, text]))) - 1  # the last column stays free: no wrap
    return Line(head, min(room, BAR_MAX) if room >= BAR_MIN else 0, text)


def summary_line(width: int, parts: list[str]) -> str:
    """The efficiency report's summary under the finished line: ``efficiency: CPU 42% of 120 core-s |
    peak 1.2 GiB of 8.0 GiB | memory='1.5GB' would ...``, parts dropped from the end until it fits
    ``width`` (the first one is cut if even it alone does not)."""
    shown = list(parts)
    while shown:
        text = "efficiency: " + " | ".join(shown)
        if len(text) < width or len(shown) == 1:
            return text[:max(width - 1, 0)]
        shown.pop()
    return ""


def short_name(label: str) -> str:
    """``poolparty pp-9c547898ef4d`` -> ``pp-9c54``: enough to tell two pools apart on one screen."""
    last = label.split()[-1] if label.split() else label
    return last[:7]


class ProgressBar:
    """One line per pool, covering the maps being tracked; it ends when they have all finished."""

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
        self._summary: list[str] | None = None  # the efficiency summary of the map that ended last

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
        unfinished, so the line stays where it was instead of jumping to its end."""
        with self._lock:
            frozen = False
            for h in [h for h in self._handles if h.done()]:
                self._handles.remove(h)
                frozen |= h.error is not None
                finished += h.n_tasks
                self._summary = h.efficiency or self._summary
            if self._handles and not self._stop.is_set() and not frozen:
                return True, finished, False
            frozen |= bool(self._handles)
            self._handles.clear()
            self._thread = None  # the next track() starts a new line
            return False, finished, frozen

    def _run(self) -> None:
        started = time.monotonic()
        line: _TerminalLine | None = None
        rate, finished, shown = TaskRate(), 0, 0
        try:
            while True:
                self._stop.wait(self.interval)
                busy, finished, frozen = self._pending(finished)
                if frozen or (line is None and not busy):
                    return  # the last state stays on screen
                snap = self._snapshot()
                total = snap.get("tasks", 0) + finished
                shown = max(shown, min(total, snap.get("tasks_done", 0) + finished))  # never backwards
                now = time.monotonic()
                rate.add(now, shown)
                if line is None and now - started < self.delay:
                    continue
                line = line or _TerminalLine(self._stream or sys.stderr)
                line.draw(_Frame(self.label, shown, total, job_counts(snap), now - started, rate.eta(now, shown, total),
                                 None if busy else self._summary))
                if not busy:
                    return
        finally:
            if line is not None:
                line.close()


class _Frame:
    """What the line shows at one moment; rendered by rich at the console's width (see :func:`layout`)."""

    def __init__(self, name: str, done: int, total: int, jobs: dict[str, int], elapsed: float,
                 eta: float | None, summary: list[str] | None = None):
        self.args = (name, done, total, jobs, elapsed, eta)
        self.summary = summary  # the last frame's second line: the efficiency report in short

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        _, done, total, *_ = self.args
        line = layout(options.max_width, *self.args)
        if not line.bar:
            yield Text(" ".join(filter(None, [line.head, line.tail])), no_wrap=True, overflow="crop")
        else:
            yield self._grid(line, done, total)
        if self.summary:
            yield Text(summary_line(options.max_width, self.summary), no_wrap=True, overflow="crop")

    @staticmethod
    def _grid(line: Line, done: int, total: int) -> Any:
        from rich.progress_bar import ProgressBar as Bar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        for width in ([len(line.head)] if line.head else []) + [line.bar, len(line.tail)]:
            grid.add_column(width=width, no_wrap=True)
        cells = ([Text(line.head, style="bold")] if line.head else []) + [
            Bar(total=max(total, 1), completed=min(done, total), width=line.bar), Text(line.tail)]
        grid.add_row(*cells)
        return grid


class _TerminalLine:
    """The line drawn with rich: redrawn in place on a terminal, where whatever the program prints to
    stdout or stderr goes above it (rich's live display redirects both while it is shown), so a ``print``
    after a map never lands on the line; on anything else only the last state is written, at the end."""

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(file=stream, highlight=False), auto_refresh=False, transient=False,
                          redirect_stdout=True, redirect_stderr=True)
        self._live.start()

    def draw(self, frame: _Frame) -> None:
        self._live.update(frame, refresh=True)

    def close(self) -> None:
        self._live.stop()
