"""Tag concurrency limits for relayed task runs, held by the runner.

Prefect's engine takes a ``tag:<name>`` concurrency slot around every tagged task run and renews
its lease while the task runs, through the API. A relayed job cannot, so its engine skips that step
(:mod:`.offline`) and the runner takes the slots instead, before the job is submitted, and holds
them, with Prefect's own ``concurrency()`` (which renews the lease), until the task run has its
final state. Only tags that have a limit cost anything: whether a tag has one is asked once per
flow run; a task run whose tags have limits gets a thread that waits for its slots.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Any, Iterable

from .orders import Order


class TagSlots:
    def __init__(self) -> None:
        self._limited: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def limited(self, tags: Iterable[str], context: contextvars.Context) -> list[str]:
        """The tags, of these, that have a concurrency limit (asked through the API once per tag)."""
        unknown = [t for t in tags if t not in self._limited]
        if unknown:
            def ask() -> dict[str, bool]:
                from prefect.client.orchestration import get_client
                from prefect.exceptions import ObjectNotFound

                found = {}
                with get_client(sync_client=True) as client:
                    for tag in unknown:
                        try:
                            client.read_global_concurrency_limit_by_name(f"tag:{tag}")
                            found[tag] = True
                        except ObjectNotFound:
                            found[tag] = False
                return found

            answers = context.copy().run(ask)
            with self._lock:
                self._limited.update(answers)
        return sorted(t for t in tags if self._limited.get(t))

    def hold(self, order: Order, tags: list[str], release: Any, fail: Any) -> None:
        """Wait for one slot of every limited tag, then ``release.put(order)``; keep the slots
        (renewing their lease) until the order's future is done. ``fail(order, message)`` if the
        slots cannot be taken (as the engine would: the task run does not run)."""
        def run() -> None:
            from prefect.client.schemas.objects import ConcurrencyLeaseHolder
            from prefect.concurrency.sync import concurrency

            try:
                with concurrency(names=[f"tag:{t}" for t in tags], occupy=1, lease_duration=60,
                                 holder=ConcurrencyLeaseHolder(type="task_run", id=order.task_run_id)):
                    order.slots_held = True
                    release.put(order)
                    _wait(order.future)
            except BaseException as e:
                if not order.slots_held:
                    fail(order, f"could not take the concurrency slots of tags {tags}: {type(e).__name__}: {e}")

        thread = threading.Thread(target=lambda: order.context.captured.copy().run(run), daemon=True,
                                  name=f"prefect-poolparty-tag-slots-{order.task_run_id}")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def close(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout=10)


def _wait(future: Any) -> None:
    import concurrent.futures as cf

    cf.wait([future])
