"""How a task run travels to its job: what is pickled, and what upstream futures become.

The job receives the flow run's serialized context and the task (pickled once each per flow run)
and a small *call*: the task run id, the parameters and ``wait_for`` with every upstream future
replaced by its final State, as Prefect's process pool ships them. The engine on the node turns a
Completed state into its value and any other into ``Pending(NotReady)`` (or, under
``allow_failure``, the exception), and records the edge from the state's task run id.
"""
from __future__ import annotations

from typing import Any


def pickle_annotations_by_value() -> None:
    """Prefect 3.8's annotations (``allow_failure``, ``unmapped``, ``quote`` ...) are tuple
    subclasses whose ``__new__`` wraps its argument, so a pickle round trip nests them:
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
