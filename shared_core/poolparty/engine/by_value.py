"""Functions from the user's own modules travel by value: the node may not be able to import them
(a script's sibling module, a notebook helper). Installed packages and the standard library travel
by reference, as usual."""
from __future__ import annotations

import functools
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any, Iterable

import cloudpickle

_INSTALLED_ROOTS = tuple({str(Path(p).resolve()) for p in (
    sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"], sys.prefix, sys.base_prefix) if p})
_registered: set[str] = set()
#: top-level packages the nodes import themselves: they always travel by reference
_IMPORTABLE_ON_NODES: set[str] = {"poolparty", "cloudpickle"}


def importable_on_nodes(*packages: str) -> None:
    """Declare top-level packages that the nodes import from the shared environment, such as a
    poolparty plugin installed with ``pip install -e`` from a source tree (outside site-packages,
    so it would otherwise look like the user's own files): their functions travel by reference,
    so the node runs the installed module, with its module-level state, not a pickled copy."""
    _IMPORTABLE_ON_NODES.update(packages)


def _is_local_module(module: types.ModuleType) -> bool:
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in _IMPORTABLE_ON_NODES or name in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    resolved = str(Path(path).resolve())
    return not resolved.startswith(_INSTALLED_ROOTS)


def _module_names(objects: Iterable[Any]) -> set[str]:
    """Modules defining these functions, classes, or the classes of these instances (through partials)."""
    names: set[str] = set()
    seen_types: set[type] = set()
    for obj in objects:
        while isinstance(obj, functools.partial):  # a partial's own __module__ is functools
            names.update(_module_names([*obj.args, *obj.keywords.values()]))
            obj = obj.func
        if obj is None:
            continue
        if not (callable(obj) or isinstance(obj, type)):
            kind = type(obj)
            if kind in seen_types:
                continue
            seen_types.add(kind)
            obj = kind
        name = getattr(obj, "__module__", None)
        if isinstance(name, str):
            names.add(name)
    return names


def register_local_modules(objects: Iterable[Any]) -> None:
    """Pickle by value the top-level modules that define these functions or the types of these
    arguments, when they are the user's own files rather than installed packages."""
    for name in _module_names(objects):
        module = sys.modules.get(name)
        if module is None or not _is_local_module(module):
            continue
        top = sys.modules.get(module.__name__.split(".")[0], module)
        if top.__name__ not in _registered:
            try:
                cloudpickle.register_pickle_by_value(top)
            except ValueError:
                continue
            _registered.add(top.__name__)
