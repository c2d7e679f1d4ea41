"""Final states the runner decides itself, when a task run's job ended without one.

A task run's own states (Running, Completed, Failed, Retrying ...) come from Prefect's engine in the
job. The runner decides only what the job could not say:

* **Crashed** when the core gave up on the job (killed, out of memory, walltime, node failure, more
  times than ``max_resubmissions``) or when the task run could not even be rebuilt on the node;
* **Cancelled** when the flow run cancelled its jobs (``cancel_all``, SIGTERM, Ctrl-C).

These are recorded the way Prefect records every task-run state: as a ``prefect.task-run.<State>``
event, emitted in the flow run's context so that it is linked to the flow run; the task run is
created by that event if no state of it ever arrived (a job that never started).
"""
from __future__ import annotations

import contextvars
import uuid
from typing import Any, Iterable

from prefect.client.schemas.objects import State, TaskRun
from prefect.states import Cancelled, Crashed


def final_state(kind: str, message: str, task_run_id: uuid.UUID, flow_run_id: uuid.UUID | None) -> State:
    """A Crashed or Cancelled state that downstream task runs can link to (it names its task run)."""
    state = Cancelled(message=message) if kind == "cancelled" else Crashed(message=message)
    state.state_details.task_run_id = task_run_id
    state.state_details.flow_run_id = flow_run_id
    return state


def record_state(state: State, task: Any, tags: Iterable[str], task_run_id: uuid.UUID,
                 flow_run_id: uuid.UUID | None, context: contextvars.Context,
                 last_event: dict[str, Any] | None) -> None:
    """Emit the state change for ``task_run_id`` in the submitting flow run's ``context``.

    ``last_event`` is the last relayed state event of this task run (relay mode): its task run
    (name, run count, inputs) is continued; otherwise the task run is read from the API, and if
    the API does not know it, it is described from the task as Prefect's engine would have.
    """
    def emit() -> None:
        from prefect.utilities.engine import emit_task_run_state_change_event

        task_run, previous = _task_run(task, tags, task_run_id, flow_run_id, last_event)
        emit_task_run_state_change_event(task_run=task_run, initial_state=previous, validated_state=state)

    context.copy().run(emit)


def _task_run(task: Any, tags: Iterable[str], task_run_id: uuid.UUID, flow_run_id: uuid.UUID | None,
              last_event: dict[str, Any] | None) -> tuple[TaskRun, State | None]:
    if last_event is not None:
        payload = last_event["payload"]
        previous = State.model_validate({"id": last_event["id"], "timestamp": last_event["occurred"],
                                         **payload["validated_state"]})
        return TaskRun.model_validate({"id": task_run_id, "flow_run_id": flow_run_id, **payload["task_run"]}), previous
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            task_run = client.read_task_run(task_run_id)
        return task_run, task_run.state
    except Exception:  # not known to the API (never started), or the API is unreachable
        pass
    dynamic_key = str(uuid.uuid4())
    return TaskRun(id=task_run_id, name=f"{task.name}-{dynamic_key[:3]}", flow_run_id=flow_run_id,
                   task_key=task.task_key, dynamic_key=dynamic_key, tags=sorted(tags)), None


def infrastructure_verdict(error: BaseException, chunk: int) -> tuple[str, str]:
    """How a task run ends when the core gave ``error`` instead of its State: ("cancelled", why) for
    a cancelled job, else ("crashed", why). A given-up job's message is followed by its log tail."""
    import concurrent.futures as cf

    from poolparty.errors import RetryLimitExceeded

    if isinstance(error, (cf.CancelledError, KeyboardInterrupt)):
        return "cancelled", f"poolparty cancelled its job: {error}"
    if isinstance(error, RetryLimitExceeded):
        why = error.failures.get(chunk, "") or error
        return "crashed", f"its job ended without a result and poolparty gave up: {why}"
    return "crashed", f"the job could not run the task run: {type(error).__name__}: {error}{remote_traceback(error)}"


def log_tail(handle: Any, chunk: int, lines: int = 15) -> str:
    """The end of the job logs the core kept for this chunk (every attempt), for a Crashed message."""
    from poolparty.store.logs import chunk_log_text

    try:
        text = chunk_log_text(handle, chunk)
    except Exception:
        text = None
    if not text:
        return ""
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return f"\nLast lines of the job's log:\n{tail}"


def remote_traceback(error: BaseException) -> str:
    """The traceback from the node that the core attached to an exception, if any."""
    from poolparty.errors import RemoteTraceback

    cause = error.__cause__
    return f"\n{cause}" if isinstance(cause, RemoteTraceback) else ""
