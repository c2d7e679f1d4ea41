"""Resources from the names workflow managers use (Snakemake's standard resources), per queue.

A workflow written for one scheduler should still run on another: names that the chosen queue cannot
express are left out and listed in :attr:`WorkflowResources.ignored` (the caller decides whether to
warn), never silently turned into something else. Names that poolparty does not know are ignored too
(Snakemake jobs carry ``tmpdir``, ``disk_mb``, ``_cores`` ... that no scheduler needs).

=====================  ===========================  ==============================  =====================
name                   Resources field              SLURM                           SGE
=====================  ===========================  ==============================  =====================
``cpus_per_task``      cpus (``<= 0``: not set)     ``--cpus-per-task``             ``-pe smp N``
``threads``            cpus (if no cpus_per_task)   ``--cpus-per-task``             ``-pe smp N``
``mem_mib``/``mem_mb`` memory (MiB / MB)            ``--mem``                       ``-l h_vmem`` per slot
``runtime``            walltime (minutes)           ``--time``                      ``-l h_rt``
``gpu``/``gpus``       gpus                         ``--gpus``                      ``-l gpu=N``
``gpu_model``          extra (with the gpu count)   ``--gpus=<model>:N``            ignored
``tasks``              extra (validated here)       ``--ntasks``                    slots of ``sge_pe``
``tasks_per_node``     extra (validated here)       ``--ntasks-per-node``           refused
``nodes``              extra (validated here)       ``--nodes``                     refused if > 1
``mpi``                (the rule's launcher)        nothing: the rule runs it       nothing
``slurm_partition``    partition                    ``--partition``                 ignored
``slurm_account``      account                      ``--account``                   ignored
``qos``                qos                          ``--qos``                       ignored
``constraint``         extra                        ``--constraint=...``            ignored
``gres``               extra                        ``--gres=...``                  ignored
``slurm_extra``        extra (shlex-split)          as given                        ignored
``sge_queue``          partition                    ignored                         ``-q``
``sge_pe``             extra (with the slot count)  ignored                         ``-pe <pe> N``
``sge_project``        extra                        ignored                         ``-P``
``sge_extra``          extra (shlex-split)          ignored                         as given
=====================  ===========================  ==============================  =====================

On the local queue only cpus, memory, walltime and gpus are kept (it enforces memory and walltime);
``tasks`` multiply the cpus there, and ``nodes`` > 1 or ``tasks_per_node`` are refused on any queue that
runs jobs on this host.

Parallel jobs follow the SLURM plugin's documented meaning: ``mpi`` names the launcher the rule's own
command uses (``shell: "{resources.mpi} -n {resources.tasks} prog"``, e.g. ``srun`` or ``mpirun``), so
the job is not wrapped in one; an MPI job needs ``tasks`` or ``tasks_per_node`` (one of them, > 1).
``mem_mib`` wins over ``mem_mb`` when both are present (Snakemake derives one from the other).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from poolparty.errors import ConfigurationError
from poolparty.queues import QUEUE_NAMES, queue_class
from poolparty.resources import Resources


@dataclass(frozen=True)
class WorkflowResources:
    resources: Resources
    ignored: tuple[str, ...] = field(default_factory=tuple)  # given names the queue cannot express


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"resource {name}={value!r} must be a number")
    if isinstance(value, (int, float)):
        return int(math.ceil(value))
    try:
        return int(math.ceil(float(str(value).strip())))
    except ValueError:
        raise ConfigurationError(f"resource {name}={value!r} must be a number") from None


def _given(values: Mapping[str, Any], name: str) -> bool:
    v = values.get(name)
    return v is not None and v != "" and not (isinstance(v, str) and v.lower() in ("none", "null"))


#: names every queue is asked about (validated here by :func:`task_layout`, turned into flags by the adapter)
PARALLEL_NAMES = ("mpi", "tasks", "tasks_per_node", "nodes")


def _count(values: Mapping[str, Any], name: str) -> int | None:
    if not _given(values, name):
        return None
    n = _int(name, values[name])
    if n < 1:
        raise ConfigurationError(f"resource {name}={values[name]!r} must be an integer >= 1")
    return n


def task_layout(values: Mapping[str, Any]) -> dict[str, Any]:
    """``tasks``, ``tasks_per_node``, ``nodes`` (validated integers) and ``mpi`` (the launcher), those given.

    As the SLURM executor plugin documents them: an MPI job (``mpi`` set) needs ``tasks`` or
    ``tasks_per_node``, not both, and more than one task."""
    layout: dict[str, Any] = {name: n for name in ("tasks", "tasks_per_node", "nodes")
                              if (n := _count(values, name)) is not None}
    if _given(values, "mpi"):
        layout["mpi"] = str(values["mpi"])
        per_job, per_node = layout.get("tasks"), layout.get("tasks_per_node")
        if per_job is None and per_node is None:
            raise ConfigurationError(f"resource mpi={layout['mpi']!r}: an MPI job needs tasks=N or "
                                     "tasks_per_node=N (the number of MPI processes)")
        if per_job is not None and per_node is not None:
            raise ConfigurationError("resources tasks and tasks_per_node: give one of them for an MPI job")
        if (per_job or per_node) < 2:
            raise ConfigurationError(f"resource mpi={layout['mpi']!r} with a single task: give tasks (or "
                                     "tasks_per_node) > 1, or drop mpi for a serial job")
    return layout


def scheduler_only_names() -> list[str]:
    """Every workflow resource name that only some scheduler understands, in registry order."""
    return list(dict.fromkeys(name for q in QUEUE_NAMES for name in queue_class(q).workflow_names))


def portable_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The names every queue understands -> Resources fields (cpus, memory, walltime, gpus)."""
    out: dict[str, Any] = {}
    if _given(values, "cpus_per_task"):
        n = _int("cpus_per_task", values["cpus_per_task"])
        if n > 0:
            out["cpus"] = n
    elif _given(values, "threads"):
        n = _int("threads", values["threads"])
        if n > 0:
            out["cpus"] = n
    if _given(values, "mem_mib"):
        out["memory"] = max(1, _int("mem_mib", values["mem_mib"])) * 1024**2
    elif _given(values, "mem_mb"):
        out["memory"] = max(1, _int("mem_mb", values["mem_mb"])) * 1000**2
    if _given(values, "runtime"):
        minutes = _int("runtime", values["runtime"])
        if minutes > 0:
            out["walltime"] = minutes * 60
    for name in ("gpu", "gpus"):
        if _given(values, name):
            out["gpus"] = _int(name, values[name])
            break
    return out


def resources_from_workflow(values: Mapping[str, Any], queue: str,
                            base: Resources | None = None) -> WorkflowResources:
    """Translate Snakemake-style resource names for ``queue`` over ``base``: the portable names here, the
    scheduler's own ones by its adapter (``QueueAdapter.translate_workflow``)."""
    adapter = queue_class(queue)
    base = base or Resources()
    given = {name: values[name] for name in adapter.workflow_names if _given(values, name)}
    given.update(task_layout(values))
    fields = portable_fields(values)
    if adapter.runs_on_this_host:
        fields = _on_this_host(fields, given, queue)
    fields, extra = adapter.translate_workflow(given, fields, base)
    ignored = [name for name in scheduler_only_names() if name not in adapter.workflow_names and _given(values, name)]
    return WorkflowResources(dataclasses.replace(base, **fields, extra=extra), tuple(ignored))


def _on_this_host(fields: dict[str, Any], given: Mapping[str, Any], queue: str) -> dict[str, Any]:
    """A queue that runs jobs on this machine: the tasks run here (their CPUs add up); more than one
    node cannot be had."""
    if given.get("nodes", 1) > 1 or "tasks_per_node" in given:
        what = f"nodes={given['nodes']}" if given.get("nodes", 1) > 1 else "tasks_per_node"
        raise ConfigurationError(f"resource {what}: the {queue} queue runs jobs on this machine only; use "
                                 "tasks=N for several processes here, or a cluster queue")
    if given.get("tasks", 1) > 1:
        fields = {**fields, "cpus": given["tasks"] * fields.get("cpus", 1)}
    return fields
