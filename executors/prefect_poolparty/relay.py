"""States and logs of task runs that ran on nodes without a network path to the Prefect API.

Prefect records a task run's states as *events* (``prefect.task-run.Running`` ...) and its logs
through the ``/logs`` endpoint. A job in relay mode appends both to a record file of its own under
the flow run's relay directory (:class:`RelayWriter`, one file per job process, written
synchronously so that a SIGKILL keeps everything up to the kill). The runner, which can reach the
API, tails these files and hands each event and log to its own ``EventsWorker`` / ``APILogWorker``
(:class:`RelayReader`) inside the flow run's context, so Prefect attaches the flow-run, flow,
deployment and work-pool resources exactly as it does for a local task run. Each relayed log is also
written to the flow's console (the local ``prefect.task_runs`` logger, not sent to the API twice), as a
local task run's engine does: "Finished in state Completed()", a failed task's traceback.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from poolparty.store import records

EVENT = "event"
LOG = "log"


class RelayWriter:
    """Job side: one append-only record file per job process."""

    def __init__(self, relay_dir: str | os.PathLike[str]):
        name = f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid.uuid4().hex[:8]}.rec"
        self.path = Path(relay_dir) / name
        self._writer = records.RecordWriter(self.path)
        self._lock = threading.Lock()  # events come from the engine thread, logs from any thread

    def event(self, event: Any) -> None:
        """Record a ``prefect.events.Event``."""
        self._append(EVENT, event.model_dump_json().encode())

    def log(self, log: dict[str, Any]) -> None:
        """Record an API log (the dict ``APILogHandler.prepare`` built)."""
        self._append(LOG, json.dumps(log, default=str).encode())

    def _append(self, kind: str, payload: bytes) -> None:
        with self._lock:
            self._writer.append({"k": kind}, payload)


class RelayReader:
    """Runner side: replays what the jobs recorded, once each, in the order each job wrote it.

    ``context_for(task_run_id)`` returns the ``contextvars.Context`` captured when that task run
    was submitted (it holds the flow run and settings contexts); events are re-sent inside it.
    """

    def __init__(self, relay_dir: Path, context_for: Callable[[str | None], contextvars.Context | None]):
        self.relay_dir = relay_dir
        self._context_for = context_for
        self._offsets: dict[str, int] = {}
        self._lock = threading.Lock()  # one replay at a time: a Context may be entered by one thread only
        self.replayed = {EVENT: 0, LOG: 0}
        self.last_event: dict[str, dict[str, Any]] = {}  # task run id -> last state event (JSON)
        self._names: dict[str, str] = {}  # task run id -> its name (from its events), for the console

    def drain(self) -> int:
        """Replay every complete record written so far; returns how many were replayed."""
        with self._lock:
            try:
                names = sorted(os.listdir(self.relay_dir))
            except FileNotFoundError:
                return 0
            count = 0
            for name in names:
                if not name.endswith(".rec"):
                    continue
                path = self.relay_dir / name
                start = self._offsets.get(name, 0)
                for rec in records.read_records(path, start):
                    self._replay(rec.key.get("k"), rec.payload)
                    self._offsets[name] = rec.end
                    count += 1
            return count

    def _replay(self, kind: str | None, payload: bytes) -> None:
        if kind == EVENT:
            from prefect.events import Event
            from prefect.events.worker import EventsWorker

            event = Event.model_validate_json(payload)
            task_run_id = _task_run_of(event)
            if task_run_id and event.event.startswith("prefect.task-run."):
                self.last_event[task_run_id] = json.loads(payload)
                self._names[task_run_id] = event.resource.get("prefect.resource.name", task_run_id)
            ctx = self._context_for(task_run_id)
            send = lambda: EventsWorker.instance().send(event)  # noqa: E731
            ctx.run(send) if ctx is not None else send()
            self.replayed[EVENT] += 1
        elif kind == LOG:
            from prefect.logging.handlers import APILogWorker

            log = json.loads(payload)
            ctx = self._context_for(log.get("task_run_id"))
            send = lambda: APILogWorker.instance().send(log)  # noqa: E731
            ctx.run(send) if ctx is not None else send()
            self._to_console(log)
            self.replayed[LOG] += 1

    def _to_console(self, log: dict[str, Any]) -> None:
        """The relayed log on this process's own Prefect loggers, console only (``send_to_api=False``:
        the API has it from the relay), named and formatted as a local task run's log."""
        name = log.get("name") or "prefect.task_runs"
        logger = logging.getLogger(name)
        level = int(log.get("level") or logging.INFO)
        if not logger.isEnabledFor(level):
            return
        task_run_id = str(log.get("task_run_id") or "")
        extra = {"send_to_api": False, "task_run_id": task_run_id, "flow_run_id": log.get("flow_run_id"),
                 "task_run_name": self._names.get(task_run_id, task_run_id), "flow_run_name": ""}
        logger.handle(logger.makeRecord(name, level, "(job)", 0, str(log.get("message", "")), (), None,
                                        extra=extra))


def _task_run_of(event: Any) -> str | None:
    """The task run an event is about: its own resource, or a related ``task-run``."""
    prefix = "prefect.task-run."
    rid = event.resource.id
    if rid.startswith(prefix):
        return rid[len(prefix):]
    for related in event.related:
        if related.id.startswith(prefix):
            return related.id[len(prefix):]
    return None
