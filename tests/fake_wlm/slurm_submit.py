"""Fake `sbatch` (SLURM 22.05 syntax subset)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from typing import Any

from . import formats, model
from .cli import Invocation, gnu_getopt
from .model import Ctx
from .store import now, read_state, transaction

SHORT = "a:A:c:D:e:G:HJ:n:N:o:p:q:Qt:vW"
LONG = ["parsable", "job-name=", "array=", "output=", "error=", "export=", "chdir=",
        "cpus-per-task=", "mem=", "time=", "partition=", "account=", "qos=", "gpus=", "gres=",
        "hold", "requeue", "no-requeue", "open-mode=", "signal=", "wrap=", "nodes=", "ntasks=",
        "mem-per-cpu=", "mail-type=", "mail-user=", "comment=", "exclusive", "quiet", "verbose",
        "wait", "nice=", "get-user-env", "test-only"]
CANONICAL = {"-a": "array", "-A": "account", "-c": "cpus-per-task", "-D": "chdir", "-e": "error",
             "-G": "gpus", "-H": "hold", "-J": "job-name", "-n": "ntasks", "-N": "nodes",
             "-o": "output", "-p": "partition", "-q": "qos", "-Q": "quiet", "-t": "time",
             "-v": "verbose", "-W": "wait"}
NOT_A_SCRIPT = ("sbatch: error: This does not look like a batch script.  The first\n"
                "sbatch: error: line must start with #! followed by the path to an interpreter.\n"
                "sbatch: error: For instance: #!/bin/sh")


def _parse(inv: Invocation, argv: list[str]) -> tuple[dict[str, str], list[str]] | int:
    parsed = gnu_getopt(inv, argv, SHORT, LONG, permute=False)
    if isinstance(parsed, int):
        return parsed
    pairs, rest = parsed
    opts: dict[str, str] = {}
    for flag, value in pairs:
        opts[CANONICAL.get(flag, flag.lstrip("-"))] = value
    return opts, rest


def _directives(script: str) -> list[str]:
    """Tokens of the leading `#SBATCH` lines (stop at the first command)."""
    tokens: list[str] = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#SBATCH"):
            tokens.extend(shlex.split(stripped[len("#SBATCH"):], comments=True))
        elif stripped and not stripped.startswith("#"):
            break
    return tokens


def _signal_spec(text: str) -> dict[str, Any]:
    batch_only = False
    if ":" in text:
        prefix, text = text.split(":", 1)
        batch_only = "B" in prefix.upper()
    name, _, when = text.partition("@")
    sig = int(name) if name.isdigit() else int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    return {"sig": sig, "before": float(when) if when else 60.0, "batch_only": batch_only}


def _export_env(spec: str, submit_env: dict[str, str]) -> dict[str, str]:
    tokens = [t for t in spec.split(",") if t]
    env: dict[str, str] = {}
    if tokens and tokens[0].upper() == "ALL":
        env = dict(submit_env)
        tokens = tokens[1:]
    elif tokens and tokens[0].upper() == "NONE":
        tokens = tokens[1:]
    if not spec.upper().startswith("ALL"):
        env.update({k: v for k, v in submit_env.items() if k.startswith("SLURM_")})
    for token in tokens:
        key, eq, value = token.partition("=")
        if eq:
            env[key] = value
        elif key in submit_env:
            env[key] = submit_env[key]
    return env


def sbatch(inv: Invocation, argv: list[str]) -> int:
    """Submit a batch script; prints `Submitted batch job N` or `N` with --parsable."""
    parsed = _parse(inv, argv)
    if isinstance(parsed, int):
        return parsed
    cmdline, rest = parsed
    submit_dir = os.getcwd()
    if "wrap" in cmdline:
        script_path, args = None, rest
        script = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{cmdline['wrap']}\n"
    elif rest:
        script_path, args = rest[0], rest[1:]
        try:
            with open(script_path, "rb") as fh:
                script = fh.read().decode("utf-8", "replace")
        except OSError:
            inv.error(f"sbatch: error: Unable to open file {script_path}")
            return 1
    else:
        script_path, args, script = None, [], sys.stdin.read()
    run_direct = False
    if not script.startswith("#!"):
        if script_path and os.access(script_path, os.X_OK):
            run_direct = True  # leniency: real sbatch rejects non-#! files
        else:
            inv.error(NOT_A_SCRIPT)
            return 1
    opts: dict[str, str] = {}
    if not run_direct:
        from_script = _parse(inv, _directives(script))
        if isinstance(from_script, int):
            return from_script
        opts.update(from_script[0])
    opts.update(cmdline)
    return _submit(inv, opts, script, script_path, args, run_direct, submit_dir)


def _submit(inv: Invocation, opts: dict[str, str], script: str, script_path: str | None,
            args: list[str], run_direct: bool, submit_dir: str) -> int:
    snapshot = read_state(inv.paths)
    cfg = snapshot["config"]
    try:
        time_limit = formats.parse_slurm_time(opts["time"]) if "time" in opts else None
    except ValueError:
        inv.error("sbatch: error: Invalid --time specification")
        return 1
    try:
        mem_mb = formats.parse_slurm_mem_mb(opts["mem"]) or None if "mem" in opts else None
    except ValueError:
        inv.error("sbatch: error: Invalid --mem specification")
        return 1
    try:
        cpus = int(opts.get("cpus-per-task", "1"))
        if cpus < 1:
            raise ValueError
    except ValueError:
        inv.error(f'sbatch: error: Invalid numeric value "{opts["cpus-per-task"]}" for --cpus-per-task.')
        return 1
    task_ids, throttle = None, None
    if "array" in opts:
        try:
            task_ids, throttle = formats.parse_slurm_array(opts["array"])
        except ValueError:
            inv.error("sbatch: error: Invalid --array specification")
            return 1
        if max(task_ids) >= cfg["max_array_size"]:
            inv.error("sbatch: error: Batch job submission failed: Invalid job array specification")
            return 1
    if cpus > cfg["slots"]:
        inv.error("allocation failure: Requested node configuration is not available" if "test-only" in opts
                  else "sbatch: error: Batch job submission failed: Requested node configuration is not available")
        return 1
    if "test-only" in opts:  # validate only: nothing is queued (the real one prints to stderr)
        inv.error(f"sbatch: Job {snapshot.get('next_id', 1)} to start at "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S')} using {cpus} processors on nodes fake in partition "
                  f"{opts.get('partition', cfg['partition'])}")
        return 0
    if opts.get("open-mode", "truncate") not in ("append", "truncate"):
        inv.error(f"sbatch: error: Invalid --open-mode argument: {opts['open-mode']}")
        return 1
    try:
        signal_spec = _signal_spec(opts["signal"]) if "signal" in opts else None
    except (KeyError, ValueError):
        inv.error(f"sbatch: error: Invalid --signal specification: {opts['signal']}")
        return 1
    export = opts.get("export", "ALL")
    env = _export_env(export, dict(os.environ))
    name = opts.get("job-name") or ("wrap" if "wrap" in opts else
                                    os.path.basename(script_path) if script_path else "sbatch")
    workdir = os.path.abspath(os.path.join(submit_dir, opts["chdir"])) if "chdir" in opts else submit_dir
    requeue = cfg["job_requeue"]
    if "requeue" in opts:
        requeue = True
    if "no-requeue" in opts:
        requeue = False
    with transaction(inv.paths) as state:
        ctx = Ctx(inv.paths, state, now())
        job_id = model.allocate_job_id(state)
        spool = inv.paths.job_spool(job_id)
        spool.mkdir(parents=True, exist_ok=True)
        if run_direct:
            argv = [os.path.abspath(script_path or ""), *args]
        else:
            script_file = spool / "slurm_script"
            script_file.write_text(script, encoding="utf-8")
            script_file.chmod(0o700)
            argv = [str(script_file), *args]
        (spool / "env.json").write_text(json.dumps(env), encoding="utf-8")
        job = {
            "job_id": job_id, "name": name, "user": inv.user, "uid": inv.uid, "group": inv.group,
            "gid": os.getegid(), "submit_dir": submit_dir, "workdir": workdir, "argv": argv,
            "command": os.path.abspath(script_path) if script_path else "(null)",
            "stdout": opts.get("output"), "stderr": opts.get("error"),
            "open_mode": opts.get("open-mode", "truncate"), "cpus": cpus,
            "cpus_set": "cpus-per-task" in opts, "mem_mb": mem_mb, "time_limit": time_limit,
            "partition": opts.get("partition", cfg["partition"]), "account": opts.get("account"),
            "qos": opts.get("qos", "normal"), "gpus": opts.get("gpus"), "gres": opts.get("gres"),
            "requeue": requeue, "signal": signal_spec, "export": export,
            "array": task_ids is not None, "array_spec": opts.get("array"), "throttle": throttle,
            "array_min": min(task_ids) if task_ids else None,
            "array_max": max(task_ids) if task_ids else None,
            "array_count": len(task_ids) if task_ids else None,
            "array_step": _step(task_ids) if task_ids else None,
        }
        model.add_submission(ctx, job, task_ids, "user" if "hold" in opts else None)
    if "parsable" in opts:
        inv.print(str(job_id))
    else:
        inv.print(f"Submitted batch job {job_id}")
    inv.out.flush()
    return _wait(inv, job_id) if "wait" in opts else 0


def _step(task_ids: list[int]) -> int:
    steps = {b - a for a, b in zip(task_ids, task_ids[1:])}
    return steps.pop() if len(steps) == 1 else 1


def _wait(inv: Invocation, job_id: int) -> int:
    """`--wait`: block until every element ended; exit code is the highest one."""
    while True:
        state = read_state(inv.paths)
        recs = [r for r in state["tasks"].values() if r["job_id"] == job_id]
        if all(r["state"] not in model.ACTIVE for r in recs):
            codes = [(r["exit"] or [0, 0])[0] or (1 if r["state"] != "COMPLETED" else 0) for r in recs]
            return max(codes, default=0)
        time.sleep(0.1)
