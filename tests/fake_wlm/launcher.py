"""Start one job element as a real subprocess, the way slurmstepd / sge_shepherd would."""
from __future__ import annotations

import os
import re
import resource
import subprocess
from typing import Any, Callable

from . import model
from .model import Ctx, Record
from .store import read_json

SGE_MINIMAL_PATH = "/usr/local/bin:/bin:/usr/bin"
NO_VAL_TASK = "4294967294"  # what SLURM prints for %a of a non-array job


def launch(ctx: Ctx, rec: Record) -> subprocess.Popen[bytes] | None:
    """Start `rec`; on a launch error apply the flavor's failure and return None."""
    job = ctx.job(rec)
    if ctx.flavor == "slurm":
        model.split_raw_id(ctx, rec)
        plan = _slurm_plan(ctx, rec, job)
    elif ctx.flavor in ("pbs", "lsf"):
        plan = _pbs_plan(ctx, rec, job) if ctx.flavor == "pbs" else _lsf_plan(ctx, rec, job)
    else:
        plan = _sge_plan(ctx, rec, job)
    if plan is None:
        return None
    argv, cwd, env, out_path, err_path, preexec = plan
    mode = "ab" if job.get("open_mode") == "append" or ctx.flavor == "sge" else "wb"
    out_fh = err_fh = None
    try:
        out_fh = open(out_path, mode)
        err_fh = out_fh if err_path == out_path else open(err_path, mode)
    except OSError as exc:
        if out_fh is not None:
            out_fh.close()
        bad = exc.filename or out_path
        model.fail_launch(ctx, rec, f'error: can\'t open output file "{bad}": {exc.strerror}', 26)
        return None
    try:
        if ctx.flavor == "slurm" and cwd != job["workdir"]:
            err_fh.write(f"slurmstepd: error: couldn't chdir to `{job['workdir']}': No such file or "
                         f"directory: going to {cwd} instead\n".encode())
            err_fh.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_fh,
                                stderr=err_fh, start_new_session=True, close_fds=True,
                                preexec_fn=preexec)
    except OSError as exc:
        err_fh.write(f"fake_wlm: execve(): {argv[0]}: {exc.strerror}\n".encode())
        if ctx.flavor == "sge":
            model.fail_launch(ctx, rec, f"error: can't execute {argv[0]}: {exc.strerror}", 27)
        else:
            rec.update(start_t=ctx.now, node=ctx.cfg["node"])
            model._terminal(ctx, rec, "FAILED", "NonZeroExitCode", [126, 0])
        return None
    finally:
        out_fh.close()
        if err_fh is not out_fh:
            err_fh.close()
    rec.update(state="RUNNING", reason=rec["reason"] if rec["hold"] else "None", start_t=ctx.now,
               end_t=None, pid=proc.pid, start_ticks=_start_ticks(proc.pid), node=ctx.cfg["node"],
               stdout_path=out_path,
               stderr_path=err_path, exit=None, error=None)
    model.arm_rules(ctx, rec)
    signal_spec = job.get("signal")
    if signal_spec and job.get("time_limit"):
        rec["armed"].append({"action": "signal", "sig": signal_spec["sig"],
                             "batch_only": signal_spec["batch_only"], "attempt": rec["restarts"],
                             "at": ctx.now + max(0.0, job["time_limit"] - signal_spec["before"])})
    return proc


Plan = tuple[list[str], str, dict[str, str], str, str, Callable[[], None] | None]


def _slurm_plan(ctx: Ctx, rec: Record, job: dict[str, Any]) -> Plan | None:
    cwd = job["workdir"] if os.path.isdir(job["workdir"]) else "/tmp"
    default_out = "slurm-%A_%a.out" if job["array"] else "slurm-%j.out"
    out_path = _abs(cwd, _slurm_expand(job.get("stdout") or default_out, ctx, rec, job))
    err_path = _abs(cwd, _slurm_expand(job["stderr"], ctx, rec, job)) if job.get("stderr") else out_path
    env = dict(read_json(ctx.paths.job_spool(job["job_id"]) / "env.json", {}))
    cfg = ctx.cfg
    env.update({
        "SLURM_JOB_ID": str(rec["raw_id"]), "SLURM_JOBID": str(rec["raw_id"]),
        "SLURM_JOB_NAME": job["name"], "SLURM_JOB_USER": job["user"], "SLURM_JOB_UID": str(job["uid"]),
        "SLURM_JOB_GID": str(job["gid"]), "SLURM_JOB_NODELIST": cfg["node"],
        "SLURM_NODELIST": cfg["node"], "SLURMD_NODENAME": cfg["node"], "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NNODES": "1", "SLURM_JOB_PARTITION": job["partition"],
        "SLURM_SUBMIT_DIR": job["submit_dir"], "SLURM_SUBMIT_HOST": cfg["node"],
        "SLURM_CLUSTER_NAME": cfg["cluster"], "SLURM_JOB_CPUS_PER_NODE": str(job["cpus"]),
        "SLURM_CPUS_ON_NODE": str(job["cpus"]), "SLURM_GTIDS": "0", "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_PRIO_PROCESS": "0",
        "SLURM_EXPORT_ENV": job["export"], "ENVIRONMENT": "BATCH",
    })
    if job.get("account"):
        env["SLURM_JOB_ACCOUNT"] = job["account"]
    if job.get("qos"):
        env["SLURM_JOB_QOS"] = job["qos"]
    if job.get("mem_mb"):
        env["SLURM_MEM_PER_NODE"] = str(job["mem_mb"])
    if job.get("cpus_set"):
        env["SLURM_CPUS_PER_TASK"] = str(job["cpus"])
    if rec["restarts"]:
        env["SLURM_RESTART_COUNT"] = str(rec["restarts"])
    if job["array"]:
        env.update({
            "SLURM_ARRAY_JOB_ID": str(job["job_id"]), "SLURM_ARRAY_TASK_ID": str(rec["task_id"]),
            "SLURM_ARRAY_TASK_MIN": str(job["array_min"]), "SLURM_ARRAY_TASK_MAX": str(job["array_max"]),
            "SLURM_ARRAY_TASK_COUNT": str(job["array_count"]),
            "SLURM_ARRAY_TASK_STEP": str(job["array_step"]),
        })
    return list(job["argv"]), cwd, env, out_path, err_path, None


def _slurm_expand(pattern: str, ctx: Ctx, rec: Record, job: dict[str, Any]) -> str:
    values = {
        "A": str(job["job_id"]), "a": str(rec["task_id"]) if job["array"] else NO_VAL_TASK,
        "j": str(rec["raw_id"]), "J": f"{rec['raw_id']}.batch", "x": job["name"], "u": job["user"],
        "N": ctx.cfg["node"], "n": "0", "t": "0", "s": "batch",
    }

    def repl(match: re.Match[str]) -> str:
        width, letter = match.group(1), match.group(2)
        if letter == "%":
            return "%"
        value = values[letter]
        return value.zfill(int(width)) if width and value.isdigit() else value

    return re.sub(r"%(\d*)([AajJxuNnts%])", repl, pattern)


def _sge_plan(ctx: Ctx, rec: Record, job: dict[str, Any]) -> Plan | None:
    sge = job["sge"]
    cwd = job["workdir"]
    if not os.path.isdir(cwd):
        model.fail_launch(ctx, rec, f"error: can't chdir to {cwd}: No such file or directory", 28)
        return None
    suffix = f"{job['job_id']}.{rec['task_id']}" if job["array"] else str(job["job_id"])
    out_path = _sge_path(sge.get("stdout"), f"{job['name']}.o{suffix}", ctx, rec, job)
    err_path = out_path if sge.get("merge") else _sge_path(sge.get("stderr"), f"{job['name']}.e{suffix}",
                                                           ctx, rec, job)
    submit_env = read_json(ctx.paths.job_spool(job["job_id"]) / "env.json", {})
    shell = sge.get("shell") or "/bin/sh"
    if sge.get("export_all"):
        env = dict(submit_env)
    else:
        env = {"PATH": SGE_MINIMAL_PATH, "HOME": job["home"], "USER": job["user"],
               "LOGNAME": job["user"], "SHELL": shell}
    task = str(rec["task_id"]) if job["array"] else "undefined"
    env.update({
        "JOB_ID": str(job["job_id"]), "JOB_NAME": job["name"], "REQUEST": job["name"],
        "JOB_SCRIPT": job["argv"][0] if not sge.get("binary") else job["argv"][0],
        "SGE_TASK_ID": task,
        "SGE_TASK_FIRST": str(job["array_min"]) if job["array"] else "undefined",
        "SGE_TASK_LAST": str(job["array_max"]) if job["array"] else "undefined",
        "SGE_TASK_STEPSIZE": str(job["array_step"]) if job["array"] else "undefined",
        "NSLOTS": str(job["cpus"]), "NHOSTS": "1", "NQUEUES": "1", "QUEUE": ctx.cfg["queue"],
        "HOSTNAME": ctx.cfg["node"], "ENVIRONMENT": "BATCH", "RESTARTED": "1" if rec["restarts"] else "0",
        "SGE_O_WORKDIR": job["submit_dir"], "SGE_O_HOME": job["home"], "SGE_O_LOGNAME": job["user"],
        "SGE_O_PATH": submit_env.get("PATH", ""), "SGE_O_SHELL": submit_env.get("SHELL", "/bin/sh"),
        "SGE_O_HOST": ctx.cfg["node"], "SGE_CWD_PATH": cwd, "SGE_STDOUT_PATH": out_path,
        "SGE_STDERR_PATH": err_path, "SGE_CELL": "default", "TMPDIR": "/tmp", "TMP": "/tmp",
    })
    if job.get("pe"):
        env["PE"] = job["pe"]
    env.update(sge.get("variables", {}))
    if sge.get("binary"):
        argv = [shell, "-c", " ".join(job["argv"])]  # real SGE loses the quoting too
    else:
        argv = [shell, *job["argv"]]
    vmem = sge.get("h_vmem")

    def limit_address_space() -> None:  # h_vmem is an rlimit in SGE
        resource.setrlimit(resource.RLIMIT_AS, (vmem, vmem))
    return argv, cwd, env, out_path, err_path, limit_address_space if vmem else None


def _pbs_plan(ctx: Ctx, rec: Record, job: dict[str, Any]) -> Plan:
    """A PBS job starts in the user's home directory (PBS_O_WORKDIR names where it was submitted); its
    output goes to -o with ^array_index^ replaced, or <name>.o<seq>[.<index>] in the submission dir.
    (Real PBS spools it on the node and copies it there at the end; the fake writes it directly.)"""
    pbs = job["pbs"]
    index = str(rec["task_id"]) if job["array"] else ""
    default = f"{job['name']}.o{job['job_id']}" + (f".{index}" if index else "")
    out_path = _abs(job["submit_dir"], (pbs.get("stdout") or default).replace("^array_index^", index))
    err_path = out_path if pbs["join"] == "oe" else _abs(
        job["submit_dir"], (pbs.get("stderr") or default.replace(".o", ".e", 1)).replace("^array_index^", index))
    submit_env = read_json(ctx.paths.job_spool(job["job_id"]) / "env.json", {})
    env = dict(submit_env) if pbs["export_all"] else {"PATH": SGE_MINIMAL_PATH, "HOME": job["home"]}
    env.update({
        "PBS_JOBID": rec["key"], "PBS_JOBNAME": job["name"], "PBS_O_WORKDIR": job["submit_dir"],
        "PBS_O_HOME": job["home"], "PBS_O_HOST": ctx.cfg["node"], "PBS_O_QUEUE": "workq", "PBS_QUEUE": "workq",
        "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_NODEFILE": "/dev/null", "NCPUS": str(job["cpus"]),
        "OMP_NUM_THREADS": str(job["cpus"]), "PBS_TASKNUM": "1", "TMPDIR": "/tmp",
    })
    if job["array"]:
        env.update(PBS_ARRAY_INDEX=index, PBS_ARRAY_ID=f"{job['job_id']}[].{model.PBS_SERVER}")
    return list(job["argv"]), job["home"], env, out_path, err_path, None


def _lsf_plan(ctx: Ctx, rec: Record, job: dict[str, Any]) -> Plan:
    """LSF runs the command line through /bin/sh in -cwd (default: the submission directory), with the
    submission environment; -o expands %J (job id) and %I (array index, 0 for a plain job)."""
    index = str(rec["task_id"]) if job["array"] else "0"
    cwd = job["workdir"] if os.path.isdir(job["workdir"]) else job["home"]
    out = (job["lsf"].get("stdout") or f"{cwd}/LSFJOB_{job['job_id']}.out")
    out_path = _abs(cwd, out.replace("%J", str(job["job_id"])).replace("%I", index))
    err = job["lsf"].get("stderr")
    err_path = _abs(cwd, err.replace("%J", str(job["job_id"])).replace("%I", index)) if err else out_path
    env = dict(read_json(ctx.paths.job_spool(job["job_id"]) / "env.json", {}))
    env.update({
        "LSB_JOBID": str(job["job_id"]), "LSB_JOBINDEX": index, "LSB_JOBNAME": f"{job['name']}[{index}]" if job["array"] else job["name"],
        "LSB_QUEUE": job.get("queue") or "normal", "LSB_HOSTS": ctx.cfg["node"], "LSB_MCPU_HOSTS":
        f"{ctx.cfg['node']} {job['cpus']}", "LS_SUBCWD": job["submit_dir"], "LSB_DJOB_NUMPROC": str(job["cpus"]),
    })
    return ["/bin/sh", "-c", job["command_line"]], cwd, env, out_path, err_path, None


def _sge_path(raw: str | None, default_name: str, ctx: Ctx, rec: Record, job: dict[str, Any]) -> str:
    cwd = job["workdir"]
    if not raw:
        return os.path.join(cwd, default_name)
    if ":" in raw and not raw.startswith("/"):
        raw = raw.split(":", 1)[1]  # [hostname]:path
    values = {"HOME": job["home"], "USER": job["user"], "JOB_ID": str(job["job_id"]),
              "JOB_NAME": job["name"], "HOSTNAME": ctx.cfg["node"],
              "TASK_ID": str(rec["task_id"]) if job["array"] else "undefined"}
    path = re.sub(r"\$(HOME|USER|JOB_ID|JOB_NAME|HOSTNAME|TASK_ID)", lambda m: values[m.group(1)], raw)
    path = _abs(cwd, path)
    return os.path.join(path, default_name) if os.path.isdir(path) else path


def _abs(cwd: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(cwd, path)


def _start_ticks(pid: int) -> int | None:
    """Start time in clock ticks, so that a recycled pid is never mistaken for the job."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
