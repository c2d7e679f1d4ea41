"""How a task run travels to its job: what is pickled, and what upstream futures become.

The job receives the flow run's serialized context and the task (pickled once each per flow run)
and a small *call*: the task run id, the parameters and ``wait_for`` with every upstream future
replaced by its final State, as Prefect's process pool ships them. The engine on the node turns a
Completed state into its value and any other into ``Pending(NotReady)`` (or, under
``allow_failure``, the exception), and records the edge from the state's task run id.

A relayed job cannot load blocks from the API, so the result storage a task run writes to (the
task's ``result_storage=``, the flow's, the default storage block of the settings or the server) is
resolved here, on the driver, and travels with the task as a block (see :func:`storage_resolved`).
"""
from __future__ import annotations

import contextvars
import copy
import dataclasses
import threading
from typing import Any

import cloudpickle

from poolparty.engine.by_value import dumps as dumps_keeping_file_names, register_local_modules
from poolparty.errors import ConfigurationError

from .orders import ShippedContext


class PickledOnce:
    """The flow run's serialized contexts and its tasks, each pickled once: ``serialize_context()``
    is slow (a settings dump) and a ``.map`` ships the same task N times."""

    def __init__(self, *, resolve_storage: bool = False) -> None:
        self._resolve_storage = resolve_storage  # relay mode: the job cannot load blocks itself
        self._lock = threading.Lock()
        self._contexts: dict[tuple[Any, ...], tuple[tuple[Any, ...], ShippedContext]] = {}
        self._tasks: dict[int, tuple[Any, bytes]] = {}

    def context(self) -> ShippedContext:
        """The calling thread's flow-run/task-run/settings/tags context, pickled for the job."""
        from prefect.context import FlowRunContext, SettingsContext, TagsContext, TaskRunContext, serialize_context

        flow_ctx, task_ctx, settings_ctx = FlowRunContext.get(), TaskRunContext.get(), SettingsContext.get()
        tags = frozenset(TagsContext.get().current_tags)
        key = (id(flow_ctx), id(task_ctx), id(settings_ctx), tags)
        with self._lock:
            hit = self._contexts.get(key)
        if hit is not None:
            return hit[1]
        if flow_ctx is not None:
            register_local_modules([flow_ctx.flow.fn])
        try:
            blob = cloudpickle.dumps(serialize_context())
        except Exception as e:
            raise ConfigurationError(
                f"cannot pickle the flow run's context for the compute nodes: {e}. It holds the flow and its "
                "parameters: pass data, not open files, locks or connections, to a flow whose tasks run "
                "as jobs.") from e
        captured = contextvars.copy_context()
        captured.run(TaskRunContext.__var__.set, None)  # replayed events belong to their own task run
        shipped = ShippedContext(blob, flow_ctx.flow_run.id if flow_ctx and flow_ctx.flow_run else None, captured)
        with self._lock:
            self._contexts[key] = ((flow_ctx, task_ctx, settings_ctx), shipped)  # keeps the ids alive
        return shipped

    def any_context(self) -> contextvars.Context | None:
        """A copy of any context of this flow run (for relayed records of no known task run)."""
        with self._lock:
            shipped = next(iter(self._contexts.values()), None)
        return shipped[1].captured.copy() if shipped else None

    def task(self, task: Any) -> bytes:
        """The pickled task (its module by value when the nodes could not import it)."""
        with self._lock:
            hit = self._tasks.get(id(task))
        if hit is not None:
            return hit[1]
        register_local_modules([task.fn])
        shipped = storage_resolved(task) if self._resolve_storage else task
        try:
            blob = dumps_keeping_file_names(shipped)  # a failing task's traceback names its file and line
        except Exception as e:
            raise ConfigurationError(f"cannot pickle the task {task.name!r} for the compute nodes: {e}. Move "
                                     "unpicklable state (open files, locks, connections) inside the task.") from e
        with self._lock:
            self._tasks[id(task)] = (task, blob)  # keeps the id alive
        return blob


def storage_resolved(task: Any) -> Any:
    """``task``, or a copy of it whose result storage (and cache-key storage) is the block Prefect's
    engine would use for it in the calling context, loaded here through the API.

    The engine resolves a block slug (``result_storage="s3-bucket/results"``), a default storage block
    (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` or the server's) and a slug in the cache policy's
    ``key_storage`` by loading the block from the API when the task run starts; a relayed job would
    crash there. The resolved block keeps its document id, so result records name it as they would.
    Its settings (credentials included, as in Prefect's own serialized context) travel in the
    task's pickle, in the private work_dir.
    """
    from prefect.results import get_result_store

    store = get_result_store().update_for_task(task, _sync=True)
    policy = getattr(task, "cache_policy", None)
    key_storage = getattr(policy, "key_storage", None)
    resolve_key = isinstance(key_storage, str) and store.metadata_storage is not None
    if store.result_storage is task.result_storage and not resolve_key:
        return task
    shipped = copy.copy(task)
    shipped.result_storage = store.result_storage
    if resolve_key and dataclasses.is_dataclass(policy):
        shipped.cache_policy = dataclasses.replace(policy, key_storage=store.metadata_storage)
    return shipped


def pickle_annotations_by_value() -> None:
    """Prefect's annotations (``allow_failure``, ``unmapped``, ``quote`` ...) are tuple
    subclasses whose ``__new__`` wraps its argument, so a pickle round trip nests them (3.8 and 3.9):
    ``allow_failure(x)`` comes back as ``allow_failure((x,))``. Pickle them as ``cls(value)``."""
    import copyreg

    from prefect.utilities.annotations import BaseAnnotation

    todo = [BaseAnnotation]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not BaseAnnotation and cls not in copyreg.dispatch_table:
            copyreg.pickle(cls, lambda a: (type(a), (a[0],)))


def upstream_futures(parameters: dict[str, Any], wait_for: list[Any] | None) -> list[Any]:
    """Every distinct future a task run must wait for: in its parameters (at any depth, outside
    ``quote``, as Prefect's engine resolves them) and in ``wait_for``."""
    from prefect.futures import PrefectFuture
    from prefect.utilities.annotations import quote
    from prefect.utilities.collections import StopVisiting, visit_collection

    found: dict[int, Any] = {}

    def visit(expr: Any, context: dict[str, Any]) -> Any:
        if isinstance(context.get("annotation"), quote):
            raise StopVisiting()
        if isinstance(expr, PrefectFuture):
            found[id(expr)] = expr
        return expr

    visit_collection(parameters, visit_fn=visit, return_data=False, max_depth=-1, context={})
    for fut in wait_for or ():
        if isinstance(fut, PrefectFuture):
            found[id(fut)] = fut
    return list(found.values())


def futures_to_states(parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` with every upstream future (outside ``quote``) replaced by its final State."""
    from prefect.futures import PrefectFuture
    from prefect.utilities.annotations import quote
    from prefect.utilities.collections import StopVisiting, visit_collection

    def visit(expr: Any, context: dict[str, Any]) -> Any:
        if isinstance(context.get("annotation"), quote):
            raise StopVisiting()
        if isinstance(expr, PrefectFuture):
            return final_state_of(expr)
        return expr

    return visit_collection(parameters, visit_fn=visit, return_data=True, max_depth=-1, context={},
                            remove_annotations=False)


def final_state_of(fut: Any) -> Any:
    """The final State of a done future (``wait`` first: a concurrent future keeps it from there)."""
    try:
        fut.wait()
    except BaseException:
        pass
    return fut.state
