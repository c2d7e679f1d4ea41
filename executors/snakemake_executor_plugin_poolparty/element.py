"""Runs on the compute node: one Snakemake job per call, each in a child forked from this process.

An array element that runs several Snakemake jobs one after another (its own chunk, then the chunks it
claims) pays Snakemake's start-up once: the first call imports Snakemake and builds its command-line
parser (which loads the plugin registries); every job then runs in a forked child as
``snakemake.cli.main(argv)``, the very command line Snakemake gave the job (``--target-jobs``,
``--attempt``, ``--mode remote`` ...). Each job is still its own Snakemake run with its own exit status,
log and attempt, and a failing one leaves its neighbours alone: they are separate processes.

Modules the children import lazily (Snakemake imports its storage/URL code while parsing the Snakefile)
are learned from the first children and imported here, so that later children find them loaded; so are
the regular expressions they compile (Snakemake's and the rules' wildcard patterns, ~30% of a warm
child's CPU time), which later children then find in ``re``'s cache.

The child's output goes to an unlinked temporary file; on failure it travels back to the workflow in
the exception (:class:`SnakemakeJobFailed`), so that the job's log holds this job's output only.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from typing import Sequence

from poolparty.errors import CommandFailed

#: the end of a failed job's output kept in its exception (and so in its log file)
LOG_LIMIT = 256 * 1024

_warm = False
_learned: set[str] = set()
_to_import: list[str] = []  # learned from the last child, imported before the next one forks
_to_compile: list[tuple[str, int]] = []  # regular expressions (pattern, flags) the last child compiled
_compiled: set[tuple[str, int]] = set()


class SnakemakeJobFailed(CommandFailed):
    """The Snakemake job exited non-zero; ``log`` is its output (the end of it, if long)."""

    def __init__(self, returncode: int, command: str, log: str):
        super().__init__(returncode, command)
        self.log = log

    def __reduce__(self):
        return (SnakemakeJobFailed, (self.returncode, self.command, self.log))


def supports_forked_jobs() -> str | None:
    """None if this Snakemake can run a job as ``snakemake.cli.main(argv)`` in a forked child, else why
    not (a feature test: ``main`` taking the command line is what ``python -m snakemake`` relies on)."""
    import inspect

    if not hasattr(os, "fork"):
        return "os.fork is not available on this platform"
    try:
        from snakemake.cli import main
    except ImportError as e:
        return f"snakemake.cli.main cannot be imported ({e})"
    if "argv" not in inspect.signature(main).parameters:
        return "snakemake.cli.main does not take the command line (argv) in this Snakemake version"
    return None


def run_job(argv: Sequence[str], cwd: str) -> int:
    """Run one Snakemake job (``argv``: what follows ``python -m snakemake``) in a forked child; 0 on
    success, else :class:`SnakemakeJobFailed` with the child's output."""
    _warm_up()
    _import_learned()
    _compile_learned()
    log = tempfile.TemporaryFile(prefix="poolparty-snakemake-")
    learned_r, learned_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns
        os.close(learned_r)
        _child(list(argv), cwd, log.fileno(), learned_w)
    os.close(learned_w)
    with os.fdopen(learned_r, "rb") as pipe:
        learned = _read_learned(pipe.read())
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    # only if another job comes: an element with one job pays nothing
    _to_import.extend(learned.get("modules", []))
    _to_compile.extend(learned.get("patterns", []))
    if rc == 0:
        log.close()
        return 0
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - LOG_LIMIT))
    text = log.read().decode(errors="replace")
    log.close()
    sys.stdout.write(text)  # the scheduler's log of the element has it too
    sys.stdout.flush()
    raise SnakemakeJobFailed(rc, "snakemake " + " ".join(argv), text)


def _child(argv: list[str], cwd: str, log_fd: int, learned_w: int) -> None:
    rc = 1
    try:
        before = set(sys.modules)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.chdir(cwd)
        sys.argv = ["snakemake", *argv]
        from snakemake.cli import main

        try:
            main(argv)
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        learned = {"modules": sorted(set(sys.modules) - before), "patterns": _cached_patterns()}
        with os.fdopen(learned_w, "wb") as pipe:
            pipe.write(json.dumps(learned).encode())
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            import logging

            logging.shutdown()  # Snakemake's handlers: os._exit below runs no exit hook (fork: not ours)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc & 0xFF if rc >= 0 else 1)


def _warm_up() -> None:
    """Import Snakemake and build its parser once per element (the plugin registries are singletons)."""
    global _warm
    if _warm:
        return
    from snakemake.cli import get_argument_parser

    get_argument_parser()
    _warm = True


def _import_learned() -> None:
    """Import here what the last child imported from installed packages or the standard library (never
    the workflow's own modules): the next children start with them loaded."""
    import importlib
    import sysconfig

    names, _to_import[:] = list(_to_import), []
    roots = tuple(os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in
                                                ("stdlib", "platstdlib", "purelib", "platlib")})
    for name in names:
        if name in _learned or name in sys.modules:
            continue
        _learned.add(name)
        spec_file = _module_file(name)
        if spec_file is None or not os.path.realpath(spec_file).startswith(roots):
            continue
        try:
            importlib.import_module(name)
        except BaseException:  # a module that only imports in its own context: the child imports it
            pass


def _read_learned(data: bytes) -> dict:
    """What a child reported (see :func:`_child`); nothing if it died before saying."""
    try:
        learned = json.loads(data or b"{}")
    except ValueError:
        return {}
    return learned if isinstance(learned, dict) else {}


def _cached_patterns() -> list[tuple[str, int]]:
    """The text patterns in ``re``'s cache (keys ``(type, pattern, flags)``; a private detail of ``re``:
    anything else yields nothing, and the children simply compile their own)."""
    try:
        return [(k[1], int(k[2])) for k in list(getattr(re, "_cache", {}))
                if isinstance(k, tuple) and len(k) == 3 and isinstance(k[1], str)]
    except Exception:
        return []


def _compile_learned() -> None:
    """Compile here what the last child compiled: the next children find it in ``re``'s cache."""
    patterns, _to_compile[:] = list(_to_compile), []
    for item in patterns:
        try:
            pattern, flags = str(item[0]), int(item[1])
        except (TypeError, ValueError, IndexError):
            continue
        if (pattern, flags) in _compiled:
            continue
        _compiled.add((pattern, flags))
        try:
            re.compile(pattern, flags)
        except Exception:  # not valid on its own (flags only valid with bytes...): the child compiles it
            pass


def _module_file(name: str) -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except BaseException:
        return None
    return spec.origin if spec is not None and spec.has_location else None
