"""A one-line progress display of a pool's maps on the terminal: tasks done of total and the ETA, then,
as the width allows, a bar, the jobs running, pending, failed and resubmitted, and the time elapsed.

Drawn by a small thread that polls :meth:`Engine.progress` (tasks are counted as workers record them,
inside a job, through the work_dir: no scheduler call). Shown only when stderr is a terminal (or
``progress=True``), and only for maps still running after ``delay`` seconds: short maps and
non-interactive runs stay quiet. The line is laid out by :func:`render`, a pure function of the width.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import deque
from typing import Callable, TextIO

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


def render(width: int, name: str, done: int, total: int, jobs: dict[str, int], elapsed: float,
           eta: float | None, *, fancy: bool = True) -> str:
    """The progress line for a terminal ``width`` columns wide: fields are dropped in
    :data:`DROP_ORDER` until the rest and a bar of at least ``BAR_MIN`` fit (then the bar goes too)."""
    dropped: set[str] = set()
    for step in (None, *DROP_ORDER):
        if step is not None:
            dropped.add(step)
        line = _layout(name, done, total, jobs, elapsed, eta, dropped, width, fancy)
        if line is not None:
            return line
    return _layout(name, done, total, jobs, elapsed, eta, dropped | {"bar"}, width, fancy) or ""


def _layout(name: str, done: int, total: int, jobs: dict[str, int], elapsed: float, eta: float | None,
            dropped: set[str], width: int, fancy: bool) -> str | None:
    """The line without ``dropped`` fields, or None if it does not fit with a bar of ``BAR_MIN``."""
    head = [] if "name" in dropped else [name if "long name" not in dropped else short_name(name)]
    count = f"{done}/{total}" + ("" if "tasks word" in dropped else " tasks")
    if "percent" not in dropped:
        count = f"{100 * done // max(total, 1):3d}% {count}"
    shown = [f"{n} {state}" for state, n in jobs.items()
             if state not in dropped and not (n == 0 and f"{state} 0" in dropped)]
    tail = [count] + (["jobs: " + ", ".join(shown)] if shown else [])
    tail += ([] if "elapsed" in dropped else [f"{clock(elapsed)} elapsed"]) + [f"eta {clock(eta)}"]
    text = " | ".join(tail)
    if "bar" in dropped:
        return " ".join(head + [text])
    room = width - 1 - len(" ".join(head + [text])) - 1  # the last column stays free: no wrap
    if room < BAR_MIN:
        return None
    return " ".join(head + [_bar(min(room, BAR_MAX), done, total, fancy), text])


def short_name(label: str) -> str:
    """``poolparty pp-9c547898ef4d`` -> ``pp-9c54``: enough to tell two pools apart on one screen."""
    last = label.split()[-1] if label.split() else label
    return last[:7]


def _bar(width: int, done: int, total: int, fancy: bool) -> str:
    full = width * min(done, total) // max(total, 1)
    on, off = ("█", "░") if fancy else ("#", "-")
    return on * full + off * (width - full)


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
                line.draw(lambda width: render(width, self.label, shown, total, job_counts(snap), now - started,
                                               rate.eta(now, shown, total), fancy=line.fancy))
                if not busy:
                    return
        finally:
            if line is not None:
                line.close()


class _TerminalLine:
    """One line redrawn in place on a terminal (``\\r``, clear to the end); on anything else, a line
    every ``every`` seconds and the last one at the end. While it is on a terminal, what the program
    prints to a terminal stdout or stderr goes above it (the line is cleared, the text written, the line
    drawn again), so a ``print`` after a map never lands on the line."""

    def __init__(self, stream: TextIO, every: float = 30.0):
        self.stream = stream
        self.every = every
        self.tty = _isatty(stream)
        try:
            "█░".encode(getattr(stream, "encoding", None) or "ascii")
            self.fancy = True
        except (UnicodeEncodeError, LookupError):
            self.fancy = False
        self._text, self._written, self._shown, self._midline = "", 0.0, False, False
        self._lock = threading.RLock()
        self._redirected: list[tuple[str, _Above]] = []
        if self.tty:
            for name in ("stdout", "stderr"):
                current = getattr(sys, name)
                if _isatty(current):
                    above = _Above(current, self)
                    setattr(sys, name, above)
                    self._redirected.append((name, above))

    def width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return shutil.get_terminal_size().columns

    def draw(self, text_for: Callable[[int], str]) -> None:
        with self._lock:
            self._text = text_for(self.width())
            if self.tty:
                if not self._midline:  # a partial line printed by the program: wait for its end
                    self._write("\r" + self._text + "\x1b[K")
                    self._shown = True
            elif time.monotonic() - self._written >= self.every:
                self._write(self._text + "\n")
                self._text = ""

    def above(self, stream: TextIO, data: str) -> int:
        """``data`` written by the program to ``stream``, above the line."""
        with self._lock:
            if self._shown:
                self._write("\r\x1b[K")
                self._shown = False
            n = stream.write(data)
            stream.flush()
            if data:
                self._midline = not data.endswith("\n")
            if not self._midline and self._text:
                self._write(self._text)
                self._shown = True
            return n

    def close(self) -> None:
        with self._lock:
            for name, above in self._redirected:
                if getattr(sys, name) is above:
                    setattr(sys, name, above.wrapped)
            if self.tty:
                if self._shown:
                    self._write("\n")
                elif self._text:
                    self._write("\r" + self._text + "\n")
            elif self._text:
                self._write(self._text + "\n")

    def _write(self, data: str) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            pass
        self._written = time.monotonic()


class _Above:
    """sys.stdout or sys.stderr while a line is shown: writes go above the line."""

    def __init__(self, wrapped: TextIO, line: _TerminalLine):
        self.wrapped, self._line = wrapped, line

    def write(self, data: str) -> int:
        return self._line.above(self.wrapped, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.wrapped, name)


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False
