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

On the local queue only cpus, memory, walltime and gpus are kept (it enforces memory and walltime).
``mem_mib`` wins over ``mem_mb`` when both are present (Snakemake derives one from the other).
"""
from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from poolparty.errors import ConfigurationError
from poolparty.resources import Resources

#: options poolparty sets itself: a raw flag repeating them would break the submission
RESERVED_FLAGS = {
    "slurm": ("--job-name", "-J", "--array", "-a", "--output", "-o", "--error", "-e", "--chdir", "-D",
              "--parsable", "--export", "--wrap", "--open-mode"),
    "sge": ("-N", "-t", "-tc", "-o", "-e", "-wd", "-cwd", "-terse", "-j", "-S", "-V", "-sync", "-b"),
}
SLURM_ONLY = ("slurm_partition", "slurm_account", "qos", "constraint", "gres", "slurm_extra")
SGE_ONLY = ("sge_queue", "sge_pe", "sge_project", "sge_extra")
CLUSTER_ONLY = SLURM_ONLY + SGE_ONLY


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


def split_flags(name: str, value: Any, queue: str) -> list[str]:
    """``slurm_extra="--exclusive --nice=10"`` -> one argv item per flag; refuses flags poolparty sets."""
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        try:
            items = shlex.split(str(value))
        except ValueError as e:
            raise ConfigurationError(f"resource {name}={value!r} is not valid shell syntax: {e}") from None
    for item in items:
        flag = item.split("=", 1)[0]
        if flag in RESERVED_FLAGS.get(queue, ()):
            raise ConfigurationError(
                f"resource {name}={value!r}: {flag} is set by poolparty itself and cannot be given here")
    return items


def resources_from_workflow(values: Mapping[str, Any], queue: str,
                            base: Resources | None = None) -> WorkflowResources:
    """Translate Snakemake-style resource names for ``queue`` (local, slurm or sge) over ``base``."""
    if queue not in ("local", "slurm", "sge"):
        raise ConfigurationError(f"queue={queue!r} is unknown; choose local, slurm or sge")
    base = base or Resources()
    out: dict[str, Any] = {}
    extra: list[str] = list(base.extra)
    ignored: list[str] = []

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

    if queue == "slurm":
        if _given(values, "slurm_partition"):
            out["partition"] = str(values["slurm_partition"])
        if _given(values, "slurm_account"):
            out["account"] = str(values["slurm_account"])
        if _given(values, "qos"):
            out["qos"] = str(values["qos"])
        if _given(values, "constraint"):
            extra.append(f"--constraint={values['constraint']}")
        if _given(values, "gres"):
            extra.append(f"--gres={values['gres']}")
        if _given(values, "slurm_extra"):
            extra += split_flags("slurm_extra", values["slurm_extra"], "slurm")
        ignored += [n for n in SGE_ONLY if _given(values, n)]
    elif queue == "sge":
        if _given(values, "sge_queue"):
            out["partition"] = str(values["sge_queue"])
        if _given(values, "sge_pe"):
            # the adapter would ask for "-pe smp N": ask for the named PE instead; h_vmem is per slot,
            # so the memory becomes per slot here (the adapter then divides by one slot)
            slots = out.pop("cpus", None) or base.cpus or 1
            extra += ["-pe", str(values["sge_pe"]), str(slots)]
            if "memory" in out:
                out["memory"] = max(1, math.ceil(out["memory"] / slots))
            out["cpus"] = None
        if _given(values, "sge_project"):
            extra += ["-P", str(values["sge_project"])]
        if _given(values, "sge_extra"):
            extra += split_flags("sge_extra", values["sge_extra"], "sge")
        ignored += [n for n in SLURM_ONLY if _given(values, n)]
    else:
        ignored += [n for n in CLUSTER_ONLY if _given(values, n)]
        out.update(partition=None, account=None, qos=None)
        extra = []

    if "gpus" in out and queue == "sge" and not out["gpus"]:
        del out["gpus"]
    resources = dataclasses.replace(base, **out, extra=tuple(extra))
    return WorkflowResources(resources, tuple(ignored))
