"""Ending a local job whole: its process group, and every escapee (a child in its own session) that is
provably the job's: our uid, the job's marker in its environment or the job's worker among its ancestors,
signalled through a pidfd opened after checking its start time, so a recycled pid is never hit."""
from __future__ import annotations

import os
import signal
from typing import Iterable

#: the environment variable every process of a local job inherits: ``<element>@<token>``, unique per run
JOB_ENV = "POOLPARTY_LOCAL_JOB"


def start_ticks(pid: int) -> int | None:
    """The start time of a live process (clock ticks after boot), or None if it is gone or a zombie."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start ticks) of a live process, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):  # exited, not yet reaped (e.g. an orphan of a killed driver)
            return None
        return int(fields[1]), int(fields[19])  # ppid (field 4) and starttime (field 22)
    except (OSError, IndexError, ValueError):
        return None


def _marker(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = JOB_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode(errors="replace")
    return None


def _our_processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, start ticks) of every live process of our uid, this one excluded."""
    uid, me, out = os.getuid(), os.getpid(), {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        stat = _stat(int(name))
        if stat is not None:
            out[int(name)] = stat
    return out


def job_processes(markers: Iterable[str], roots: Iterable[int] = ()) -> dict[int, int]:
    """pid -> start ticks of our processes that carry one of ``markers`` in their environment or
    descend from one of ``roots`` (the jobs' workers, themselves included)."""
    wanted, tops = {m for m in markers if m}, set(roots)
    procs = _our_processes()
    found: dict[int, int] = {}
    for pid, (ppid, ticks) in procs.items():
        if pid in tops or (wanted and _marker(pid) in wanted):
            found[pid] = ticks
            continue
        seen: set[int] = set()
        while ppid > 1 and ppid not in seen and ppid in procs:
            if ppid in tops:
                found[pid] = ticks
                break
            seen.add(ppid)
            ppid = procs[ppid][0]
    return found


def signal_if_same(pid: int, ticks: int | None, sig: int) -> None:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``ticks``."""
    if ticks is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if start_ticks(pid) != ticks:
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    finally:
        if fd is not None:
            os.close(fd)


def end_jobs(markers: Iterable[str], roots: Iterable[int] = (), sig: int = signal.SIGKILL) -> int:
    """Signal every process of these jobs (see :func:`job_processes`); how many were signalled."""
    markers, roots = [m for m in markers if m], list(roots)
    if not markers and not roots:
        return 0
    found = job_processes(markers, roots)
    for pid, ticks in found.items():
        signal_if_same(pid, ticks, sig)
    return len(found)
