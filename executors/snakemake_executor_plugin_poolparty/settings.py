"""The plugin's settings (``--poolparty-*`` flags, ``SNAKEMAKE_POOLPARTY_*`` variables, profiles) and the
common settings Snakemake reads from every executor plugin."""
# no ``from __future__ import annotations``: Snakemake reads the settings' field types at run time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from poolparty.queues import DEFAULT_QUEUE, QUEUE_NAMES  # the registry only: no adapter is imported here

QUEUES = QUEUE_NAMES
#: default parent of poolparty's run directories, under the workflow's working directory
WORK_DIR = Path(".snakemake") / "poolparty"


def parse_bool(value: Any) -> bool:
    """``yes/no``, ``true/false``, ``1/0``, ``on/off`` (command line, environment, profile)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def _setting(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "env_var": True, **meta})


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    queue: str = _setting(
        DEFAULT_QUEUE, "Where jobs run: 'local' (processes on this machine), 'slurm' or 'sge'.",
        choices=list(QUEUES))
    max_running: Optional[int] = _setting(
        None, "Most jobs of this workflow queued or running in the scheduler at once. Default: the "
        "number of CPUs for the local queue, the value of --jobs for SLURM and SGE.")
    polling_interval: Optional[float] = _setting(
        None, "Longest pause in seconds between two scheduler status queries (one query covers every "
        "job of the workflow; the pause shortens while jobs change state). Default: 2 local, 30 on a "
        "cluster. Finished jobs are noticed from their result files, not from these queries.")
    partition: Optional[str] = _setting(
        None, "Default SLURM partition (SGE: queue) for jobs without a slurm_partition/sge_queue "
        "resource.")
    account: Optional[str] = _setting(
        None, "Default account (SLURM --account, SGE -A) for jobs without a slurm_account resource.")
    max_resubmissions: int = _setting(
        3, "How often a job that failed for an infrastructure reason (node failure, preemption, "
        "vanished job, out of memory, walltime) is resubmitted before Snakemake is told it failed. "
        "Memory and walltime are doubled on OOM and timeout. Failures of the rule itself are never "
        "resubmitted: use Snakemake's --retries.")
    array: Optional[bool] = _setting(
        True, "yes: jobs that become ready together with the same resources go out as one job array "
        "(one sbatch/qsub); no: one plain scheduler job per Snakemake job.",
        type=parse_bool, metavar="yes|no")
    fork_jobs: Optional[bool] = _setting(
        True, "yes: an array element runs the Snakemake jobs it gets one after another, each in a child "
        "forked from one process that imported Snakemake once (each job is still its own Snakemake run, "
        "with its own exit status, log and attempt), and jobs ready together are packed several per "
        "element; no: every job starts 'python -m snakemake' from scratch in an element of its own.",
        type=parse_bool, metavar="yes|no")
    linger: float = _setting(
        3.0, "Seconds an element that ran its jobs stays, idle, for jobs of later scheduling rounds with the "
        "same resources (a warm element: Snakemake is imported once for all of them, no new submission). "
        "Costs at most this many idle seconds of a job slot per element; 0: elements exit at once.")
    min_mem_mb: int = _setting(
        500, "Smallest memory request of a job in MB: each job runs a Snakemake process (about 100 MB) "
        "next to the rule, so a rule's tiny mem_mb would get the job killed for lack of memory. Larger "
        "mem_mb values are passed as they are; 0 passes every value as it is.")
    keep_logs_days: int = _setting(
        7, "Logs of failed jobs (.snakemake/poolparty_logs) and kept work directories "
        "(.snakemake/poolparty) older than this many days are deleted when a workflow starts; 0 keeps "
        "everything.")
    work_root: Optional[str] = _setting(
        None, "Directory for poolparty's run directories (inputs, results, reduced logs); it must be "
        "visible from the compute nodes. Default: .snakemake/poolparty in the working directory.")


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    # the job inherits the environment through the scheduler (local: copied, SLURM --export=ALL,
    # SGE -V): --envvars values never appear in a command line or a file
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    # status checks read the engine's handles, no scheduler call: nothing to wait for
    init_seconds_before_status_checks=0,
)
