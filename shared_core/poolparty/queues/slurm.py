"""SLURM: ``sbatch --array``, one ``squeue --name`` per poll, ``scancel``, ``scontrol``."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from poolparty.errors import SubmissionError
from poolparty.queues.resource_check import ResourceVerifier
from poolparty.resources import Resources
from poolparty.store.layout import job_log_name
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.base import ArrayRequest, JobState, JobStatus, QueueAdapter, Submitted, compress_indices

_STATES = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED, "REQUEUE_HOLD": JobState.HELD, "SPECIAL_EXIT": JobState.HELD,
    "RESV_DEL_HOLD": JobState.HELD, "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "RESIZING": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED, "STOPPED": JobState.SUSPENDED, "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "CANCELLED": JobState.CANCELLED, "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT, "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY, "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED, "BOOT_FAIL": JobState.BOOT_FAIL, "REVOKED": JobState.CANCELLED,
}
_HELD_REASONS = ("JobHeldUser", "JobHeldAdmin", "job requeued in held state")


def slurm_state(raw_state: str, reason: str) -> JobState:
    """Raw squeue state and reason -> JobState. A launch failure is a job that never started."""
    state = _STATES.get(raw_state.split()[0].rstrip("+"), JobState.FAILED)
    if state is JobState.PENDING and reason in _HELD_REASONS:
        return JobState.HELD
    if state is JobState.FAILED and reason == "JobLaunchFailure":
        return JobState.LAUNCH_FAILED
    return state


def slurm_time(seconds: int) -> str:
    """``D-HH:MM:SS``: exact to the second (``--time`` in plain minutes would round)."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}"


def resource_flags(r: Resources) -> list[str]:
    flags: list[str] = []
    if r.cpus is not None:
        flags.append(f"--cpus-per-task={r.cpus}")
    if r.memory is not None:
        flags.append(f"--mem={max(1, math.ceil(r.memory / 1024**2))}M")
    if r.walltime is not None:
        flags.append(f"--time={slurm_time(r.walltime)}")
    if r.partition:
        flags.append(f"--partition={r.partition}")
    if r.account:
        flags.append(f"--account={r.account}")
    if r.qos:
        flags.append(f"--qos={r.qos}")
    if r.gpus:
        flags.append(f"--gpus={r.gpus}")
    return flags


class SlurmQueue(QueueAdapter):
    name = "slurm"
    index_env = "SLURM_ARRAY_TASK_ID"
    first_index = 0
    result_grace = 15.0
    vanish_grace = 30.0
    min_poll_interval = 2.0

    def __init__(self, cli: SchedulerCLI):
        for program in ("sbatch", "squeue", "scancel", "scontrol"):
            cli.require(program, "slurm")
        self.cli = cli
        self._max_index: int | None | bool = False
        self._verifier = ResourceVerifier(cli, self.name)

    def max_array_index(self) -> int | None:
        if self._max_index is False:
            out = self.cli.run(["scontrol", "show", "config"]).stdout
            m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
            self._max_index = int(m.group(1)) - 1 if m else 1000  # SLURM's default MaxArraySize is 1001
        return self._max_index  # type: ignore[return-value]

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        base = ["sbatch", "--parsable", f"--job-name={request.name}", "--export=ALL",
                f"--chdir={request.workdir}", "--open-mode=append", *resource_flags(request.resources)]
        part = request.part
        if not array:
            out = []
            for chunk in part.chunks:
                argv = [*base, f"--output={request.log_dir}/{job_log_name('%j')}", *request.resources.extra,
                        str(request.script), *request.worker_argv, "--chunk", str(chunk)]
                job = self._sbatch(argv)
                out.append(Submitted(job, {chunk: job}))
            return out
        spec = compress_indices(part.indices)
        if request.throttle < len(part.indices):
            spec += f"%{request.throttle}"
        # the user's extra flags come last: they override ours (sbatch and qsub keep the last value)
        argv = [*base, f"--array={spec}", f"--output={request.log_dir}/{job_log_name('%A_%a')}",
                *request.resources.extra, str(request.script),
                *request.worker_argv, "--offset", str(part.offset), "--index-env", self.index_env]
        job = self._sbatch(argv)
        return [Submitted(job, {part.offset + i: f"{job}_{i}" for i in part.indices})]

    def _sbatch(self, argv: list[str]) -> str:
        out = self.cli.run(argv, submission=True).stdout.strip()
        job = out.split(";")[0].strip()
        if not job.isdigit():
            raise SubmissionError(argv, 0, f"unexpected sbatch output {out!r}", 1)
        return job

    def query(self, name: str) -> dict[str, JobStatus]:
        out = self.cli.run(["squeue", "--noheader", "--array", "--states=all", f"--name={name}",
                            "--format=%F|%K|%T|%r"]).stdout
        states: dict[str, JobStatus] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4:
                continue
            array_id, index, raw, reason = parts
            element = array_id if index in ("N/A", "") else f"{array_id}_{index}"
            states[element] = JobStatus(slurm_state(raw, reason), reason)
        return states

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        if name is not None:  # filters are ANDed: cancel by name alone catches every job of the pool
            self.cli.run(["scancel", f"--name={name}"])
        elif job_ids:
            self.cli.run(["scancel", *job_ids])

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.cli.run(["scontrol", "update", f"JobId={job_id}", f"ArrayTaskThrottle={throttle}"],
                     ok_codes=(0, 1))
        return True

    def log_path(self, log_dir: Path, element: str) -> Path:
        return log_dir / job_log_name(element)

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        # --test-only: slurmctld validates the request against partitions and nodes and queues nothing
        argv = ["sbatch", "--test-only", f"--chdir={workdir}", "--output=/dev/null", *resource_flags(resources),
                *resources.extra, str(script)]
        self._verifier.check(resources, argv, lambda: self._partition_limits(resources.partition))

    def _partition_limits(self, partition: str | None) -> str:
        """The partition's limits and its largest node, as scontrol reports them."""
        rows = [dict(w.split("=", 1) for w in line.split() if "=" in w)
                for line in self.cli.run(["scontrol", "show", "partition", "-o"]).stdout.splitlines()]
        rows = [r for r in rows if (r.get("PartitionName") == partition if partition else r.get("Default") == "YES")]
        if not rows:
            return f"no partition named {partition!r}" if partition else ""
        p = rows[0]
        text = (f"partition {p.get('PartitionName')}: MaxTime={p.get('MaxTime', '?')} "
                f"MaxCPUsPerNode={p.get('MaxCPUsPerNode', '?')} MaxMemPerNode={p.get('MaxMemPerNode', '?')} "
                f"TRES={p.get('TRES', '?')}")
        nodes = p.get("Nodes")
        if nodes and nodes != "(null)":
            out = self.cli.run(["scontrol", "show", "node", "-o", nodes]).stdout
            cpus = [int(m) for m in re.findall(r"\bCPUTot=(\d+)", out)]
            mem = [int(m) for m in re.findall(r"\bRealMemory=(\d+)", out)]
            if cpus and mem:
                text += f"; largest node: {max(cpus)} CPUs, {max(mem)} MB"
        return text
