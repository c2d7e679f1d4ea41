"""Functions from the user's own modules travel by value: the node may not be able to import them
(a script's sibling module, a notebook helper). Installed packages and the standard library travel
by reference, as usual."""
from __future__ import annotations

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


def _is_local_module(module: types.ModuleType) -> bool:
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in ("poolparty", "cloudpickle") or name in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return False
    resolved = str(Path(path).resolve())
    return not resolved.startswith(_INSTALLED_ROOTS)


def register_local_modules(objects: Iterable[Any]) -> None:
    """Pickle the top-level modules of these callables by value when they are the user's own files."""
    for obj in objects:
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is None or not _is_local_module(module):
            continue
        top = sys.modules.get(module.__name__.split(".")[0], module)
        if top.__name__ not in _registered:
            try:
                cloudpickle.register_pickle_by_value(top)
            except ValueError:
                continue
            _registered.add(top.__name__)
