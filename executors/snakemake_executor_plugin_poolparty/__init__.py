"""Snakemake executor plugin: ``snakemake --executor poolparty --poolparty-queue slurm -j 100``.

It only translates: the Snakemake jobs of one scheduling round that share resources become one
:meth:`poolparty.Engine.submit` batch (one array), their status is read from the batch handles (the
engine polls the scheduler once per round for the whole pool), Ctrl-C becomes
:meth:`poolparty.Engine.terminate`. Submission, polling, resubmission of infrastructure failures and
cancellation are the core's. See docs/snakemake.md.

Snakemake's registry finds ``ExecutorSettings``, ``Executor`` and ``common_settings`` here. It imports
every installed plugin at every start: these modules import nothing but the plugin interface, the
standard library and poolparty's registry of queue names (no adapter); the engine is imported when the
executor is created.

Modules: ``settings`` (flags and common settings), ``executor`` (the three verbs), ``submission``
(jobs through the core's batching window), ``status`` (what a check reports), ``commands`` (what a
job runs), ``logs`` (log bridge, failed jobs' logs, retention).
"""
from snakemake_executor_plugin_poolparty.executor import Executor
from snakemake_executor_plugin_poolparty.settings import ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
