"""Entry point of every generated CLI script: failure/delay injection, dispatch, calls.jsonl."""
from __future__ import annotations

import contextlib
import getopt
import grp
import io
import os
import pwd
import sys
import time
import traceback
from typing import Callable, TextIO

from .store import StatePaths, append_jsonl, locked, read_json, write_json_atomic

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol", "sacct")
SGE_COMMANDS = ("qsub", "qstat", "qdel", "qconf", "qacct", "qhold", "qrls", "qmod", "qalter")
PBS_COMMANDS = ("qsub", "qstat", "qdel", "qalter", "qselect")
LSF_COMMANDS = ("bsub", "bjobs", "bkill", "bmod", "bparams", "lsid")
#: what a PBS client prints when the server refuses the connection (errno 111, ECONNREFUSED)
PBS_FAILURE_TEXT = "Connection refused\n{cmd}: cannot connect to server server (errno=111)"
#: what an LSF client prints while it cannot reach LSF, then gives up (rc 255)
LSF_FAILURE_TEXT = "Cannot connect to LSF. Please wait ...\nCannot connect to LSF. Please wait ...\n" \
                   "{cmd}: LSF is down. Please try again later."
SLURM_TIMEOUT = "Socket timed out on send/recv operation"
SLURM_FAILURE_TEXT = {
    "sbatch": f"sbatch: error: Batch job submission failed: {SLURM_TIMEOUT}",
    "squeue": f"slurm_load_jobs error: {SLURM_TIMEOUT}",
    "scancel": f"scancel: error: {SLURM_TIMEOUT}",
    "scontrol": f"scontrol: error: {SLURM_TIMEOUT}",
    "sacct": f"sacct: error: Problem talking to the database: {SLURM_TIMEOUT}",
}
SGE_FAILURE_TEXT = ('error: commlib error: got select error (Connection refused)\n'
                    'unable to send message to qmaster using port 6444 on host "{node}": got send error')


class Invocation:
    """One CLI call: where the cluster lives, who calls, and the output streams."""

    def __init__(self, paths: StatePaths, name: str, out: TextIO, err: TextIO) -> None:
        self.paths = paths
        self.name = name
        self.out = out
        self.err = err
        self.uid = os.geteuid()
        try:
            self.user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            self.user = str(self.uid)

    @property
    def group(self) -> str:
        try:
            return grp.getgrgid(os.getegid()).gr_name
        except KeyError:
            return str(os.getegid())

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def error(self, text: str) -> None:
        self.err.write(text + "\n")


Command = Callable[[Invocation, list[str]], int]


def gnu_getopt(inv: Invocation, argv: list[str], short: str, long: list[str],
               permute: bool = True) -> tuple[list[tuple[str, str]], list[str]] | int:
    """getopt with GNU-style error texts; returns (opts, args) or the exit code 1."""
    try:
        return (getopt.gnu_getopt if permute else getopt.getopt)(argv, short, long)
    except getopt.GetoptError as exc:
        opt, msg = exc.opt, exc.msg
        if "not a unique prefix" in msg:
            inv.error(f"{inv.name}: option '--{opt}' is ambiguous")
        elif "must not have an argument" in msg:
            inv.error(f"{inv.name}: option '--{opt}' doesn't allow an argument")
        elif "requires argument" in msg:
            inv.error(f"{inv.name}: option '--{opt}' requires an argument" if len(opt) > 1
                      else f"{inv.name}: option requires an argument -- '{opt}'")
        else:
            inv.error(f"{inv.name}: unrecognized option '--{opt}'" if len(opt) > 1
                      else f"{inv.name}: invalid option -- '{opt}'")
        inv.error(f'Try "{inv.name} --help" for more information')
        return 1


def split_options(argv: list[str], flags: set[str], one_arg: set[str]) -> tuple[list[tuple[str, str]], list[str]] | str:
    """``[-x] [-o value] ... [--] command args`` -> ([(option, value)], command words); the first unknown
    option instead (PBS qsub and LSF bsub both read their options this way, up to the command)."""
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return opts, argv[i + 1:]
        if arg in flags:
            opts.append((arg, ""))
            i += 1
        elif arg in one_arg and i + 1 < len(argv):
            opts.append((arg, argv[i + 1]))
            i += 2
        elif arg.startswith("-"):
            return arg
        else:
            return opts, argv[i:]
    return opts, []


def _command(name: str, flavor: str = "") -> Command:
    if flavor in ("pbs", "lsf"):
        from . import lsf_cli, pbs_cli
        return getattr(pbs_cli if flavor == "pbs" else lsf_cli, name)
    if name in SLURM_COMMANDS:
        if name == "sbatch":
            from .slurm_submit import sbatch
            return sbatch
        if name in ("squeue", "scancel"):
            from . import slurm_query
            return getattr(slurm_query, name)
        from . import slurm_admin
        return getattr(slurm_admin, name)
    if name == "qsub":
        from .sge_submit import qsub
        return qsub
    if name in ("qstat", "qdel", "qhold", "qrls"):
        from . import sge_query
        return getattr(sge_query, name)
    from . import sge_admin
    return getattr(sge_admin, name)


def _take_controls(paths: StatePaths, name: str) -> tuple[float, bool, bool]:
    """(delay, fail, lost_reply) for this call; consumes one injected failure."""
    with locked(paths):
        controls = read_json(paths.controls, {})
        delay = float(controls.get("delay", {}).get(name, 0.0))
        failures = controls.get("failures", {})
        fail = failures.get(name, 0) > 0
        lost_reply = bool(controls.get("lost_reply", {}).get(name, False))
        if fail:
            failures[name] -= 1
            write_json_atomic(paths.controls, controls)
    return delay, fail, lost_reply


def main(name: str, state_dir: str, argv: list[str] | None = None) -> int:
    """Run CLI `name` against the cluster in `state_dir`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    paths = StatePaths(state_dir)
    started = time.time()
    delay, fail, lost_reply = _take_controls(paths, name)
    if delay > 0:
        time.sleep(delay)
    inv = Invocation(paths, name, sys.stdout, sys.stderr)
    if fail:
        rc = 1
        if lost_reply:  # the request went through, only the answer is lost
            quiet = Invocation(paths, name, io.StringIO(), io.StringIO())
            _run(quiet, argv)
        flavor = _flavor(paths)
        if flavor == "pbs":
            inv.error(PBS_FAILURE_TEXT.format(cmd=name))
        elif flavor == "lsf":
            inv.error(LSF_FAILURE_TEXT.format(cmd=name))
        elif name in SLURM_COMMANDS:
            inv.error(SLURM_FAILURE_TEXT[name])
        else:
            inv.error(SGE_FAILURE_TEXT.format(node=_node(paths)))
    else:
        rc = _run(inv, argv)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    append_jsonl(paths.calls, {"t": started, "cmd": name, "argv": argv, "rc": rc,
                               "dur": round(time.time() - started, 4)})
    return rc


def _flavor(paths: StatePaths) -> str:
    return read_json(paths.root / "config.json", {}).get("flavor", "")


def _node(paths: StatePaths) -> str:
    return read_json(paths.root / "config.json", {}).get("node", "vm")


def _run(inv: Invocation, argv: list[str]) -> int:
    try:
        return _command(inv.name, _flavor(inv.paths))(inv, argv)
    except BrokenPipeError:
        return 1
    except Exception:  # a bug in the fake: make it loud, never silent
        inv.error(f"{inv.name}: fake_wlm internal error:\n{traceback.format_exc()}")
        return 1
