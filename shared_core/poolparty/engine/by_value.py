"""How the user's own code travels to the nodes. Their modules (a script's sibling ``sim.py``, the
modules it imports, a notebook helper) travel by value, pickled with the functions that use them: the
node may not be able to import them. Installed packages and the standard library travel by reference,
as usual. The driver's import path travels too (:func:`driver_import_path`): what cannot travel by
value (an ``import`` run inside a task, a compiled extension) is imported from the user's directories
where the node sees them. See docs/concepts.md, "Your own modules"."""
from __future__ import annotations

import io
import os
import pickle
import sys
import sysconfig
import types
import weakref
from collections import ChainMap
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any, Iterable

import cloudpickle

from poolparty.engine.code_reach import ModuleWalk
from poolparty.payload import DYNAMIC_CODE, code_with_filename

_INSTALLED_ROOTS = tuple({str(Path(p).resolve()) for p in (
    sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"], sys.prefix, sys.base_prefix) if p})
_registered: set[str] = set()
#: top-level packages the nodes import themselves: they always travel by reference
_IMPORTABLE_ON_NODES: set[str] = {"poolparty", "cloudpickle"}
#: functions already walked (their modules are registered for good): a submit loop walks each once
_walked: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def importable_on_nodes(*packages: str) -> None:
    """Declare top-level packages that the nodes import from the shared environment, such as a
    poolparty plugin installed with ``pip install -e`` from a source tree (outside site-packages,
    so it would otherwise look like the user's own files): their functions travel by reference,
    so the node runs the installed module, with its module-level state, not a pickled copy."""
    _IMPORTABLE_ON_NODES.update(packages)


def _installed(path: str) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in _INSTALLED_ROOTS)


def _is_local_module(module: types.ModuleType) -> bool:
    """The user's own pure-Python module. A compiled extension is not: its code cannot be pickled, so
    it stays by reference (the node imports it through the driver's import path, when it sees it)."""
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in _IMPORTABLE_ON_NODES or name in sys.builtin_module_names:
        return False
    path = getattr(module, "__file__", None)
    if not path or path.endswith(tuple(EXTENSION_SUFFIXES)):
        return False
    return not _installed(str(Path(path).resolve()))


def _roots(objects: Iterable[Any]) -> list[Any]:
    """What to walk from: functions (and partials, methods, classes) themselves, but of a plain argument
    only its type (a map's million arguments are not walked one by one); a function or class already
    walked in this process is not walked again (what it reached is registered for good)."""
    roots: dict[int, Any] = {}
    for obj in objects:
        if obj is None:
            continue
        root = obj if callable(obj) or isinstance(obj, types.ModuleType) else type(obj)
        if id(root) not in roots and not _walked_before(root):
            roots[id(root)] = root
    return list(roots.values())


def _walked_before(root: Any) -> bool:
    try:
        return isinstance(root, (types.FunctionType, type)) and root in _walked
    except TypeError:  # a class whose metaclass makes it unhashable: walked each time
        return False


def register_local_modules(objects: Iterable[Any]) -> None:
    """Pickle by value the top-level packages of every user module these functions reach (through
    their globals, closures, defaults, the classes and modules they name, chained: a script's function
    calling ``a.f`` calling ``b.g`` registers ``a`` and ``b``), and of the types of these arguments."""
    roots = _roots(objects)
    for module in ModuleWalk(_is_local_module).add(roots).run().values():
        top = sys.modules.get(module.__name__.split(".")[0], module)
        if top.__name__ not in _registered:
            try:
                cloudpickle.register_pickle_by_value(top)
            except ValueError:
                continue
            _registered.add(top.__name__)
    for root in roots:  # only now: another thread pickling the same function must not skip the walk early
        try:
            if isinstance(root, (types.FunctionType, type)):
                _walked[root] = True
        except TypeError:
            pass


def _reduce_code(code: types.CodeType) -> Any:
    """cloudpickle renames every code object's file ``<dynamic-code>`` (for byte-identical pickles of
    notebook cells); poolparty keeps the name, so a task's traceback names the user's file and line,
    and the node shows the source line when it can read that file."""
    if code.co_filename == DYNAMIC_CODE:
        return _CLOUDPICKLE_CODE_REDUCE(code)
    return code_with_filename, (code.replace(co_filename=DYNAMIC_CODE), code.co_filename)


_CLOUDPICKLE_CODE_REDUCE = cloudpickle.Pickler.dispatch_table[types.CodeType]


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps``, except that code keeps its file name (see :func:`_reduce_code`)."""
    with io.BytesIO() as buf:
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return buf.getvalue()


def driver_import_path() -> list[str]:
    """The driver's ``sys.path`` entries outside the installed environment, absolute, in order (the
    script's directory first, ``''`` being the current directory): the node puts those it can see
    first on its own path, so an import run there finds the user's modules as the driver did."""
    out: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.curdir)
        if not _installed(path) and path not in out:
            out.append(path)
    return out
