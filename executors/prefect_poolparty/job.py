"""What runs on the compute node: one Prefect task run, inside Prefect's own task engine.

The payload of every poolparty task is ``Call(run_task_run, (JobHeader, context, task, call))``:
the serialized flow run context and the task are pickled once per flow run and task (the same
bytes object for every item of a map), the call (id, parameters, upstream states) per item. They
are unpickled here rather than by the worker, so a task whose module the node cannot import ends
as a Crashed task run with the reason, not as a job that dies and gets resubmitted.

Retries (``retries=``, ``retry_delay_seconds=``) happen here, in the engine's loop. A SIGTERM or
SIGKILL (scancel, walltime, OOM) ends the job without a result: the core resubmits the chunk with
the same task run ids, and the runner marks the task run Crashed when the core gives up.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import cloudpickle

#: Set in the job process: a runner entered here (Prefect does so when it hydrates the flow run
#: context) runs nested submissions in-process instead of submitting jobs from the node.
ON_COMPUTE_NODE = False


@dataclass(frozen=True)
class JobHeader:
    relay_dir: str | None  # None: direct mode (the node talks to the API itself)
    cwd: str | None = None  # the flow's working directory: the task runs there if the node sees it


class TaskRunLoadError(RuntimeError):
    """The task run could not be rebuilt on the node (a module the node cannot import, ...)."""


_loaded: dict[bytes, Any] = {}  # pickles shared by the task runs of one job, unpickled once


def run_task_run(header: JobHeader, context_blob: bytes, task_blob: bytes, call_blob: bytes) -> Any:
    """Run one task run to a final state and return that ``State`` (its result travels inside)."""
    global ON_COMPUTE_NODE
    ON_COMPUTE_NODE = True
    if header.cwd and os.path.isdir(header.cwd):
        os.chdir(header.cwd)  # relative paths in tasks mean what they mean in the flow
    if header.relay_dir is not None:
        from . import offline

        offline.install(header.relay_dir)
    context = _load(context_blob, "the flow run context", relay=header.relay_dir is not None)
    task = _load(task_blob, "the task")
    call = _load(call_blob, "the task's parameters", memo=False)

    from prefect.task_engine import run_task_async, run_task_sync

    _enter_flow_run(context_blob, context)
    kwargs = dict(task=task, task_run_id=call["task_run_id"], parameters=call["parameters"],
                  wait_for=call["wait_for"], dependencies=call["dependencies"], return_type="state")
    try:
        if task.isasync:
            import asyncio

            state = asyncio.run(run_task_async(**kwargs))
        else:
            state = run_task_sync(**kwargs)
    except BaseException as e:  # KeyboardInterrupt, SystemExit ... in the task: the engine recorded Crashed
        from prefect.states import exception_to_crashed_state
        from prefect.utilities.asyncutils import run_coro_as_sync

        state = run_coro_as_sync(exception_to_crashed_state(e))
        state.state_details.task_run_id = call["task_run_id"]
    if header.relay_dir is None:
        _flush_direct()
    return state


_entered: tuple[bytes, contextlib.ExitStack] | None = None


def _enter_flow_run(context_blob: bytes, context: dict[str, Any]) -> None:
    """Enter the flow run's hydrated context once per job, not once per task run: rebuilding the
    settings and an API client costs ~0.2 s, ten times a small task's own engine time. The task
    runs of a job then share it, as the task runs of a flow run share it in one process."""
    global _entered
    if _entered is not None and _entered[0] == context_blob:
        return
    if _entered is not None:
        _entered[1].close()
        _entered = None
    from prefect.context import SyncClientContext, hydrated_context

    stack = contextlib.ExitStack()
    stack.enter_context(hydrated_context(context))
    stack.enter_context(SyncClientContext.get_or_create())
    _entered = (context_blob, stack)


def _load(blob: bytes, what: str, *, relay: bool = False, memo: bool = True) -> Any:
    if memo and blob in _loaded:
        return _loaded[blob]
    try:
        value = cloudpickle.loads(blob)
    except Exception as e:
        raise TaskRunLoadError(
            f"could not unpickle {what} on the compute node: {type(e).__name__}: {e}. The node needs the "
            "same Python environment as the flow (modules the task uses must be importable there).") from e
    if relay:
        from .offline import offline_context

        value = offline_context(value)
    if memo:
        _loaded[blob] = value
    return value


def _flush_direct() -> None:
    """Direct mode: a task run's events leave the job before it reports its result (Prefect's
    ``EventsWorker`` sends in the background; its process pool flushes the same way). API logs are
    sent in batches and flushed by Prefect when the job exits."""
    from prefect.events.worker import EventsWorker

    with EventsWorker._instance_lock:
        started = any(isinstance(s, EventsWorker) for s in EventsWorker._instances.values())
    if started:
        try:
            EventsWorker.instance().wait_until_empty()
        except Exception:
            pass
