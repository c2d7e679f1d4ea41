"""Which of the user's own modules a function reaches: the modules whose functions, classes or module
objects its pickle will carry, found by walking what cloudpickle walks (globals named by the code,
closures, defaults, class bodies, module objects, partials, bound methods, instances of the user's
classes). The walk goes on only through what travels by value; an installed package's function travels
by reference and imports what it needs on the node itself."""
from __future__ import annotations

import functools
import sys
import types
from collections import deque
from itertools import islice
from typing import Any, Callable, Iterable

#: objects visited per walk at most: enough for the globals of some thousand functions, bounded for
#: a program whose globals hold large containers
WALK_LIMIT = 50_000
#: items looked at in one container (a global list or dict of functions, a dispatch table)
CONTAINER_LIMIT = 1_000


def code_names(code: types.CodeType) -> set[str]:
    """Every name the code (and the functions, lambdas and comprehensions nested in it) uses: a superset
    of its globals (attribute names too, looked up in the globals and skipped when absent)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


class ModuleWalk:
    """One walk from the objects given to :meth:`add`; ``is_local(module)``: the user's own module
    (it travels by value), as opposed to an installed one or the standard library."""

    def __init__(self, is_local: Callable[[types.ModuleType], bool]):
        self.is_local = is_local
        self.found: dict[str, types.ModuleType] = {}
        self._seen: set[int] = set()
        self._todo: deque[Any] = deque()

    def add(self, objects: Iterable[Any]) -> "ModuleWalk":
        self._todo.extend(objects)
        return self

    def run(self) -> dict[str, types.ModuleType]:
        """The local modules reached, by name."""
        while self._todo and len(self._seen) < WALK_LIMIT:
            obj = self._todo.popleft()
            if obj is None or id(obj) in self._seen:
                continue
            self._seen.add(id(obj))
            try:
                self._visit(obj)
            except Exception:  # an object whose attributes raise: pickling will tell, not the walk
                continue
        return self.found

    def _visit(self, obj: Any) -> None:
        if isinstance(obj, types.ModuleType):
            self._module(obj)
        elif isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, type):
            self._class(obj)
        elif isinstance(obj, functools.partial):  # a partial's own __module__ is functools
            self._todo.extend((obj.func, *obj.args, *obj.keywords.values()))
        elif isinstance(obj, types.MethodType):
            self._todo.extend((obj.__func__, obj.__self__))
        elif isinstance(obj, (list, tuple, set, frozenset)):
            self._todo.extend(islice(obj, CONTAINER_LIMIT))
        elif isinstance(obj, dict):
            self._todo.extend(islice(obj.values(), CONTAINER_LIMIT))
        elif isinstance(obj, (staticmethod, classmethod)):
            self._todo.append(obj.__func__)
        elif isinstance(obj, property):
            self._todo.extend((obj.fget, obj.fset, obj.fdel))
        else:
            kind = type(obj)
            self._todo.append(kind)
            if self._by_value(getattr(kind, "__module__", None), kind) and hasattr(obj, "__dict__"):
                self._todo.append(vars(obj))  # an instance of the user's class: its attributes travel with it

    def _by_value(self, module_name: Any, obj: Any) -> bool:
        """Whether cloudpickle will carry this function or class by value, so what it names travels too."""
        if not isinstance(module_name, str) or module_name == "__main__":
            return True
        module = sys.modules.get(module_name)
        if module is None or "<locals>" in getattr(obj, "__qualname__", "<locals>"):
            return True
        if self.is_local(module):
            self.found.setdefault(module_name, module)
            return True
        return False

    def _function(self, fn: types.FunctionType) -> None:
        if not self._by_value(fn.__module__, fn):
            return
        glob = fn.__globals__
        self._todo.extend(glob[name] for name in code_names(fn.__code__) if name in glob)
        for cell in fn.__closure__ or ():
            try:
                self._todo.append(cell.cell_contents)
            except ValueError:  # a cell not filled yet
                pass
        self._todo.extend(fn.__defaults__ or ())
        self._todo.extend((fn.__kwdefaults__ or {}).values())

    def _class(self, cls: type) -> None:
        if not self._by_value(cls.__module__, cls):
            return
        self._todo.extend(cls.__bases__)
        self._todo.extend(vars(cls).values())

    def _module(self, module: types.ModuleType) -> None:
        """A module object named by the code (``import sim`` then ``sim.run()``): a module of the user's
        travels whole (cloudpickle pickles its namespace), so everything in it is reached."""
        if not self.is_local(module):
            return
        self.found.setdefault(module.__name__, module)
        self._todo.extend(v for k, v in vars(module).items() if not k.startswith("__"))
