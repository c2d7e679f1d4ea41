"""Job side of relay mode: run Prefect's task engine on a node that cannot reach the Prefect API.

What a task run normally sends to the API, and where it goes instead (Prefect internals, the same in
3.8 and 3.9: :mod:`.internals` checks that each exists before it is touched, and
``tests/test_prefect_runner.py`` checks what each does):

* state changes are events: ``EventsWorker.send`` is replaced by a synchronous append to the relay
  file (nothing queued in memory is lost when the job is killed), and the worker uses Prefect's own
  ``ProcessPoolForwardingEventsClient`` so that ``emit_event`` does not drop events;
* the worker's enrichment (``read_flow`` ... through the API) moves to the runner, which replays
  the events inside the flow run's context; only the task run itself is attached here;
* logs go to ``set_api_log_sink`` (the hook Prefect's process pool uses), i.e. the relay file;
* the engine's tag concurrency (``concurrency(["tag:..."])``, an API lease) is a no-op: the runner
  holds those slots while the job runs;
* the serialized settings travel with the task and win over environment variables, so the API URL
  is replaced there by :data:`NO_API_URL` and the client's version check is switched off.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

from .relay import RelayWriter

#: What a relayed job sees as the API: nothing listens there, so a missed call fails fast and loudly.
NO_API_URL = "http://127.0.0.1:9/api"

_writer: RelayWriter | None = None


def install(relay_dir: str) -> None:
    """Route this process's events and API logs to a relay file; idempotent."""
    global _writer
    if _writer is not None:
        return
    from .internals import check

    check()
    from prefect import task_engine
    from prefect.events.worker import EventsWorker, ProcessPoolForwardingEventsClient
    from prefect.logging.handlers import set_api_log_sink

    writer = RelayWriter(relay_dir)
    EventsWorker.set_client_override(ProcessPoolForwardingEventsClient, event_queue=_NoQueue(),
                                     item_type="event")

    def send(self: Any, event: Any) -> None:  # replaces EventsWorker.send in this process only
        _attach_task_run(event)
        writer.event(event)

    EventsWorker.send = send  # type: ignore[method-assign]
    set_api_log_sink(writer.log)
    task_engine._concurrency = _no_concurrency  # type: ignore[attr-defined]
    task_engine._aconcurrency = _no_aconcurrency  # type: ignore[attr-defined]
    _writer = writer


def offline_context(serialized: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``serialize_context()`` output whose settings point nowhere."""
    out = dict(serialized)
    settings_ctx = dict(out.get("settings_context") or {})
    settings = copy.deepcopy(settings_ctx.get("settings") or {})
    settings.setdefault("api", {})["url"] = NO_API_URL
    settings["api"].pop("key", None)  # the node needs no credentials
    settings.setdefault("client", {})["server_version_check_enabled"] = False
    settings_ctx["settings"] = settings
    out["settings_context"] = settings_ctx
    return out


class _NoQueue:
    """The forwarding client's queue; never used, since ``send`` writes the relay file itself."""

    def put(self, item: Any) -> None:
        raise RuntimeError("relay mode: events are written by EventsWorker.send (internal error)")


def _attach_task_run(event: Any) -> None:
    """Attach the running task run (known locally) to events that do not name it already; the
    runner attaches the flow run, flow, deployment and tags when it replays the event."""
    from prefect.context import TaskRunContext
    from prefect.events.related import object_as_related_resource

    ctx = TaskRunContext.get()
    if ctx is None or ctx.task_run is None:
        return
    involved = {r.id for r in event.involved_resources}
    related = object_as_related_resource(kind="task-run", role="task-run", object=ctx.task_run)
    if related.id not in involved:
        event.related.append(related)


@contextlib.contextmanager
def _no_concurrency(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


@contextlib.asynccontextmanager
async def _no_aconcurrency(*args: Any, **kwargs: Any) -> Any:
    yield
