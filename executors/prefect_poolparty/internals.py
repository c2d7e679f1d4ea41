"""The Prefect internals this runner relies on, checked by feature rather than by version.

Relay mode reroutes what Prefect's task engine sends to the API (:mod:`.offline`), the runner
records the states a job could not (:mod:`.outcomes`) and names task runs as Prefect does. The hooks
it uses are not public API: they are the same in Prefect 3.8 and 3.9, and each is looked up here
before the first job leaves and again in the job, so that a Prefect release that moved one fails at
once with a message naming the Prefect version and the missing hook, instead of crashing every
task run on the nodes.
"""
from __future__ import annotations

import importlib

from poolparty.errors import ConfigurationError

#: (module, dotted attribute) pairs; every one must exist for the runner to work.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("prefect.events.worker", "EventsWorker.set_client_override"),
    ("prefect.events.worker", "EventsWorker.send"),
    ("prefect.events.worker", "EventsWorker._instance_lock"),
    ("prefect.events.worker", "EventsWorker._instances"),
    ("prefect.events.worker", "ProcessPoolForwardingEventsClient"),
    ("prefect.logging.handlers", "set_api_log_sink"),
    ("prefect.task_engine", "_concurrency"),
    ("prefect.task_engine", "_aconcurrency"),
    ("prefect.utilities.engine", "emit_task_run_state_change_event"),
    ("prefect._internal.uuid7", "uuid7"),
    ("prefect.results", "get_result_store"),
    ("prefect.results", "ResultStore.update_for_task"),
)

SUPPORTED = "Prefect 3.8 and 3.9"


class PrefectInternalsMoved(ConfigurationError):
    """The installed Prefect lacks a hook this runner needs (a newer Prefect moved it)."""


def missing() -> list[str]:
    """The required hooks the installed Prefect does not have, as ``module:attribute``."""
    out = []
    for module_name, dotted in REQUIRED:
        try:
            obj: object = importlib.import_module(module_name)
            for part in dotted.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            out.append(f"{module_name}:{dotted}")
    return out


def check() -> None:
    """Raise :class:`PrefectInternalsMoved` naming the Prefect version if a hook is missing."""
    gone = missing()
    if gone:
        import prefect

        raise PrefectInternalsMoved(
            f"prefect_poolparty cannot run task runs with Prefect {prefect.__version__}: it needs Prefect "
            f"internals that this version no longer has ({', '.join(gone)}). It is tested with {SUPPORTED}: "
            "install one of those (pip install 'prefect>=3.8,<3.10') or a prefect-poolparty release that "
            "supports your Prefect.")
