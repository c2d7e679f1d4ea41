"""Sun Grid Engine: ``qsub -t``, one ``qstat -xml`` per poll, ``qdel``, ``qconf``."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from poolparty.errors import SubmissionError, UnsupportedResourceError
from poolparty.queues.resource_check import ResourceVerifier
from poolparty.resources import Resources, format_hms
from poolparty.store.layout import job_log_name
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.base import ArrayRequest, JobState, JobStatus, QueueAdapter, Submitted


def sge_state(code: str) -> JobState:
    """SGE state letters -> JobState. ``E`` (Eqw) needs a qdel; ``h`` is a hold, never an error."""
    if "E" in code:
        return JobState.ERROR
    if "d" in code:
        return JobState.CANCELLED
    if "h" in code:
        return JobState.HELD
    if "R" in code:
        return JobState.REQUEUED if "q" in code else JobState.RUNNING
    if "s" in code or "S" in code or "T" in code:
        return JobState.SUSPENDED
    if "r" in code or "t" in code:
        return JobState.RUNNING
    return JobState.PENDING


def resource_flags(r: Resources) -> list[str]:
    if r.qos:
        raise UnsupportedResourceError(
            f"qos={r.qos!r}: Sun Grid Engine has no QOS; use partition= (an SGE queue) or extra=[...]")
    flags: list[str] = []
    limits: list[str] = []
    slots = r.cpus or 1
    if r.cpus is not None and r.cpus > 1:
        flags += ["-pe", "smp", str(r.cpus)]
    if r.memory is not None:  # h_vmem is per slot
        limits.append(f"h_vmem={max(1, math.ceil(r.memory / slots / 1024**2))}M")
    if r.walltime is not None:
        limits.append(f"h_rt={format_hms(r.walltime)}")
    if r.gpus:
        limits.append(f"gpu={r.gpus}")
    if limits:
        flags += ["-l", ",".join(limits)]
    if r.partition:
        flags += ["-q", r.partition]
    if r.account:
        flags += ["-A", r.account]
    return flags


class SgeQueue(QueueAdapter):
    name = "sge"
    index_env = "SGE_TASK_ID"
    first_index = 1
    contiguous_arrays = True
    result_grace = 15.0
    vanish_grace = 30.0
    min_poll_interval = 2.0

    def __init__(self, cli: SchedulerCLI):
        for program in ("qsub", "qstat", "qdel", "qconf"):
            cli.require(program, "sge")
        self.cli = cli
        self._max_index: int | None | bool = False
        self._verifier = ResourceVerifier(cli, self.name)

    def max_array_index(self) -> int | None:
        if self._max_index is False:
            out = self.cli.run(["qconf", "-sconf"]).stdout
            m = re.search(r"^max_aj_tasks\s+(\d+)", out, re.MULTILINE)
            self._max_index = int(m.group(1)) if m and int(m.group(1)) > 0 else 75000
        return self._max_index  # type: ignore[return-value]

    def submit(self, request: ArrayRequest, *, array: bool = True) -> list[Submitted]:
        # -V: the driver's environment reaches the job through the scheduler, never through a file
        base = ["qsub", "-terse", "-N", request.name, "-V", "-wd", str(request.workdir), "-j", "y",
                "-r", "y", "-S", "/bin/sh", *resource_flags(request.resources)]
        part = request.part
        if not array:
            out = []
            for chunk in part.chunks:
                argv = [*base, "-o", f"{request.log_dir}/{job_log_name('$JOB_ID')}", *request.resources.extra,
                        str(request.script), *request.worker_argv, "--chunk", str(chunk)]
                job = self._qsub(argv)
                out.append(Submitted(job, {chunk: job}))
            return out
        lo, hi = min(part.indices), max(part.indices)
        if hi - lo + 1 != len(part.indices):
            raise ValueError("SGE arrays must be contiguous (internal error)")
        argv = [*base, "-t", f"{lo}-{hi}", "-tc", str(request.throttle),
                "-o", f"{request.log_dir}/{job_log_name('$JOB_ID.$TASK_ID')}", *request.resources.extra,
                str(request.script), *request.worker_argv,
                "--offset", str(part.offset), "--index-env", self.index_env]
        job = self._qsub(argv)
        return [Submitted(job, {part.offset + i: f"{job}.{i}" for i in part.indices})]

    def _qsub(self, argv: list[str]) -> str:
        out = self.cli.run(argv, submission=True).stdout.strip()
        job = out.split(".")[0]
        if not job.isdigit():
            raise SubmissionError(argv, 0, f"unexpected qsub output {out!r}", 1)
        return job

    def query(self, name: str) -> dict[str, JobStatus]:
        out = self.cli.run(["qstat", "-xml", "-g", "d"]).stdout
        states: dict[str, JobStatus] = {}
        for job in ET.fromstring(out).iter("job_list"):
            if job.findtext("JB_name") != name:
                continue
            number = job.findtext("JB_job_number", "")
            code = job.findtext("state", "")
            tasks = job.findtext("tasks")
            for element in _elements(number, tasks):
                states[element] = JobStatus(sge_state(code), code)
        return states

    def cancel(self, job_ids: Sequence[str], name: str | None = None) -> None:
        targets = [name] if name is not None else list(job_ids)
        if targets:  # qdel exits 1 when a job is already gone: that is fine here
            self.cli.run(["qdel", *targets], ok_codes=(0, 1))

    def set_throttle(self, job_id: str, throttle: int) -> bool:
        self.cli.run(["qalter", "-tc", str(throttle), job_id], ok_codes=(0, 1))
        return True

    def log_path(self, log_dir: Path, element: str) -> Path:
        return log_dir / job_log_name(element)

    def check_resources(self, resources: Resources, script: Path, workdir: Path) -> None:
        # -w v: the qmaster checks the request against an empty cluster and queues nothing
        argv = ["qsub", "-w", "v", "-wd", str(workdir), "-S", "/bin/sh", "-o", "/dev/null", "-j", "y",
                *resource_flags(resources), *resources.extra, str(script)]
        self._verifier.check(resources, argv, lambda: self._queue_limits(resources))

    def _queue_limits(self, resources: Resources) -> str:
        """Slots, h_rt and h_vmem of the queue, and the slots of the smp parallel environment."""
        queue = resources.partition or "all.q"
        out = self.cli.run(["qconf", "-sq", queue], ok_codes=(0, 1)).stdout
        q = {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}
        text = f"queue {queue}: " + " ".join(f"{k}={q[k].strip()}" for k in ("slots", "h_rt", "h_vmem") if k in q)
        if resources.cpus and resources.cpus > 1:
            pe = self.cli.run(["qconf", "-sp", "smp"], ok_codes=(0, 1)).stdout
            m = re.search(r"^slots\s+(\d+)", pe, re.MULTILINE)
            if m:
                text += f"; parallel environment smp: {m.group(1)} slots"
        return text


def _elements(number: str, tasks: str | None) -> list[str]:
    """``<tasks>`` is absent (plain job), one id, or a range ``3-8:1`` (collapsed pending tasks)."""
    if not tasks:
        return [number]
    out = []
    for item in tasks.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", item.strip())
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        step = int(m.group(3) or 1)
        out.extend(f"{number}.{i}" for i in range(lo, hi + 1, step))
    return out
