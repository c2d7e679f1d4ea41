"""Is a *real* SLURM / Sun Grid Engine cluster reachable from this machine?

Stdlib only (pytest is imported lazily by :func:`require_or_skip`). Used by the tests that run against
the single-node test clusters started with ``sudo ci/start-slurm.sh`` / ``sudo ci/start-sge.sh``::

    from tests.real_wlm import slurm_available, require_or_skip   # or: from real_wlm import ...

    def test_something_on_slurm():
        require_or_skip(slurm_available(), "real SLURM")
        ...

"Real" means the daemons answer, not merely that the commands are on PATH: the fake schedulers used by
other tests implement ``scontrol show config`` / ``qconf -sconf`` but not ``scontrol ping``, ``sinfo`` or
``qstat -f``; and a script ``scontrol`` (or a Python ``qstat``) is only trusted if the daemon's pid file
on this host names a live process (the call-counting shims in conftest.py are scripts too). Each check
runs at most two commands with hard timeouts (about 2 s in total) in their own process group, so it
cannot hang on a dead controller or on grandchildren holding a pipe. Results are cached for 10 s
(:func:`clear_cache` forgets them).

With ``POOLPARTY_REQUIRE_REAL_WLM=1`` (set by ``.ci/run``) a missing cluster fails the test instead of
skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

__all__ = ["slurm_available", "sge_available", "require_or_skip", "REQUIRE_ENV"]

REQUIRE_ENV = "POOLPARTY_REQUIRE_REAL_WLM"

_BUDGET = 1.8  # seconds for one whole check (all commands together)
_CACHE_TTL = 10.0  # seconds a result is reused
_cache: dict[str, tuple[float, str | None]] = {}

# Where ci/start-*.sh puts the daemons' pid files (Debian packages' defaults).
_SLURMCTLD_PIDFILE = "/run/slurmctld.pid"
_SGE_QMASTER_PIDFILE = "/var/spool/gridengine/qmaster/qmaster.pid"

# SGE queue-instance states that mean "no job will start here": (a)larm, (A) suspend alarm,
# (c)onfiguration ambiguous, (C)alendar suspended, (d)isabled, (D) calendar disabled, (E)rror,
# (s)uspended, (S)ubordinate, (u)nknown/execd not reporting, (o)rphaned.
_SGE_BAD_STATES = set("aAcCdDEsSuo")
_SLURM_GOOD_NODE_STATES = ("idle", "mixed", "allocated", "completing")


def _run(argv: list[str], deadline: float) -> tuple[int | None, str]:
    """Run argv with stdin closed and a timeout ending at `deadline` (time.monotonic()).

    Returns (returncode, stdout+stderr); returncode is None on timeout or if it could not be started.
    """
    timeout = deadline - time.monotonic()
    if timeout <= 0.05:
        return None, f"no time left to run {argv[0]}"
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: a timeout kills wrapper scripts' children too
        )
    except OSError as exc:
        return None, f"cannot run {argv[0]}: {exc}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass  # a descendant escaped the group and holds the pipe: give up on it
        return None, f"'{' '.join(argv)}' timed out"
    return proc.returncode, out.decode("utf-8", "replace").strip()


def _pidfile_process(path: str, comm: str) -> str:
    """Describe the daemon named in a pid file: 'running (pid N)' or why not."""
    try:
        with open(path) as fh:
            pid = int(fh.read().strip() or "0")
    except FileNotFoundError:
        return f"no pid file {path}"
    except (OSError, ValueError) as exc:
        return f"unreadable pid file {path} ({exc})"
    try:
        with open(f"/proc/{pid}/comm") as fh:
            actual = fh.read().strip()
    except OSError:
        return f"{comm} not running (stale pid {pid} in {path})"
    if actual != comm:
        return f"{comm} not running (pid {pid} in {path} is {actual!r})"
    return f"{comm} running (pid {pid})"


def _shebang(path: str) -> str | None:
    """The '#!' line of a script, or None for a binary (SLURM's commands are ELF; the fakes are Python)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    return head.split(b"\n", 1)[0].decode("utf-8", "replace")


def _first_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0][:200] if lines else "(no output)"


def _cached(key: str, check) -> str | None:
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_TTL:
        return hit[1]
    result = check()
    _cache[key] = (time.monotonic(), result)
    return result


def clear_cache() -> None:
    """Forget cached answers (e.g. after starting or stopping a cluster inside a test)."""
    _cache.clear()


# --------------------------------------------------------------------------------------------- SLURM
def _check_slurm() -> str | None:
    for cmd in ("sbatch", "scontrol", "sinfo"):
        if shutil.which(cmd) is None:
            return f"{cmd} not on PATH"
    scontrol = shutil.which("scontrol") or "scontrol"
    daemon = _pidfile_process(_SLURMCTLD_PIDFILE, "slurmctld")
    if _shebang(scontrol) is not None and not daemon.startswith("slurmctld running"):
        # a wrapper script is fine in front of a local daemon (e.g. the tests' call-counting shim);
        # without one it is most likely a fake scheduler
        return f"{scontrol} is a script, not SLURM's scontrol, and {daemon} (a fake scheduler on PATH?)"
    deadline = time.monotonic() + _BUDGET
    rc, out = _run([scontrol, "ping"], deadline)
    # real output: "Slurmctld(primary) at vm is UP"
    if rc != 0 or "is UP" not in out:
        return f"slurmctld not answering: {_first_line(out)} [{daemon}]"
    rc, out = _run(["sinfo", "-h", "-N", "-o", "%N %T"], deadline)
    if rc != 0:
        return f"sinfo failed (rc={rc}): {_first_line(out)}"
    nodes = [ln.split() for ln in out.splitlines() if ln.strip()]
    if not nodes:
        return "sinfo lists no nodes"
    for fields in nodes:
        # "idle", "mixed+" are usable; "idle*" (not responding), "idle~" (powered off), "drained" are not
        if len(fields) >= 2 and fields[1].rstrip("+") in _SLURM_GOOD_NODE_STATES:
            return None
    states = ", ".join(" ".join(f) for f in nodes[:5])
    return f"no SLURM node is idle/mixed/allocated (sinfo: {states})"


def slurm_available() -> str | None:
    """None if a real SLURM answers (scontrol ping UP and a usable node in sinfo); else the reason."""
    return _cached("slurm", _check_slurm)


# --------------------------------------------------------------------------------------------- SGE
def _check_sge() -> str | None:
    for cmd in ("qsub", "qstat", "qdel", "qconf"):
        if shutil.which(cmd) is None:
            return f"{cmd} not on PATH"
    qstat = shutil.which("qstat") or "qstat"
    daemon = _pidfile_process(_SGE_QMASTER_PIDFILE, "sge_qmaster")
    shebang = _shebang(qstat)
    # Debian's /usr/bin/q* are /bin/sh wrappers; a Python script without a local qmaster is a fake
    if shebang is not None and "python" in shebang and not daemon.startswith("sge_qmaster running"):
        return f"{qstat} is a Python script, not SGE's qstat, and {daemon} (a fake scheduler on PATH?)"
    deadline = time.monotonic() + _BUDGET
    # `qstat -f` needs a live qmaster and lists queue instances:
    #   queuename  qtype resv/used/tot. load_avg arch  states
    #   all.q@vm   BIP   0/0/16         0.19     lx-amd64
    rc, out = _run([qstat, "-f", "-u", "*"], deadline)
    if rc is None or rc != 0:
        return f"sge_qmaster not answering: {_first_line(out)} [{daemon}]"
    instances = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and "@" in fields[0] and fields[2].count("/") == 2:
            instances.append(fields)
    if not instances:
        return f"qstat -f lists no queue instance: {_first_line(out)}"
    for fields in instances:
        states = fields[5] if len(fields) >= 6 else ""
        slots_total = fields[2].rsplit("/", 1)[-1]
        if not (set(states) & _SGE_BAD_STATES) and fields[3] != "-NA-" and slots_total not in ("", "0"):
            return None
    desc = ", ".join(f"{f[0]} load={f[3]} states={f[5] if len(f) >= 6 else '-'}" for f in instances[:5])
    return f"no usable SGE queue instance (needs a reporting execd and no E/d/u/a/s state): {desc}"


def sge_available() -> str | None:
    """None if a real SGE answers (qstat -f shows a queue instance without E/d/u/... states); else why not."""
    return _cached("sge", _check_sge)


# --------------------------------------------------------------------------------------------- pytest
def require_or_skip(reason: str | None, what: str) -> None:
    """Skip the calling test if `reason` is set; fail it instead when POOLPARTY_REQUIRE_REAL_WLM=1."""
    if not reason:
        return
    import pytest  # lazily: this module is stdlib-only otherwise

    low = what.lower()
    if "sge" in low or "grid engine" in low:
        hint = "sudo ci/start-sge.sh"
    elif "slurm" in low:
        hint = "sudo ci/start-slurm.sh"
    else:
        hint = "sudo ci/start-slurm.sh / sudo ci/start-sge.sh"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what}: {reason} ({REQUIRE_ENV}=1 makes this a failure). Start it with: {hint}",
                    pytrace=False)
    pytest.skip(f"{what}: {reason}. Start it with: {hint}")
