"""A task run the runner accepted and has not resolved yet (an *order*), with the flow run's context
it ships; the submitter and the tag slots both hold orders."""
from __future__ import annotations

import concurrent.futures as cf
import contextvars
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from poolparty import Resources


@dataclass(eq=False)
class ShippedContext:
    """``serialize_context()`` of one flow-run/tags/settings combination, pickled once."""

    blob: bytes
    flow_run_id: uuid.UUID | None
    captured: contextvars.Context  # for replaying events and recording states in the flow run


@dataclass(eq=False)
class Order:
    """A task run accepted by ``submit`` and not resolved yet."""

    task: Any
    task_run_id: uuid.UUID
    parameters: dict[str, Any]
    wait_for: list[Any] | None
    dependencies: dict[str, Any] | None
    resources: Resources
    tags: frozenset[str]  # the task's and the submitting context's (``with prefect.tags(...)``)
    context: ShippedContext
    task_blob: bytes
    future: "cf.Future[Any]"
    waiting: int = 0  # upstream futures not done yet
    slots_held: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
