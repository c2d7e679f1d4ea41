"""A script's own modules reach the nodes: a sibling module and a chain of two (script -> a -> b) by value
(the script's directory renamed away first, so no node can import from it), and an ``import`` inside a
task through the driver's import path, as ``multiprocessing`` runs them."""
from __future__ import annotations

import functools
import importlib
import shutil
import sys
import textwrap
import types
import uuid

import pytest

import poolparty
from poolparty.engine.by_value import importable_on_nodes
from poolparty.engine.code_reach import ModuleWalk
from user_project import run_script


@pytest.mark.parametrize("kind", ["local", "fake-slurm", "slurm"])
def test_sibling_and_chained_modules_of_a_script_run_on_the_nodes(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    out = run_script(q, tmp_path, "modules")
    assert out["lazy"] == [101, 201]  # `import a` (then b) on the node, from the script's directory
    assert out["sibling"] == [10, 20, 30]
    assert out["chain"] == [101, 201, 301]
    assert out["chain_apply"] == 401
    assert out["thing"] == ["Thing", 5, True]  # an instance of b's class comes back as that very class
    assert out["submit"] == [601, 70]


def test_a_call_naming_a_module_the_node_cannot_import_fails_with_that_import_error(tmp_path):
    """The call's own pickle (not a map's shared function) names a module the node cannot import: its
    task fails with ModuleNotFoundError, as a map's does, instead of being resubmitted as a lost job."""
    name = f"pp_gone_{uuid.uuid4().hex[:12]}"
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{name}.py").write_text("def double(x):\n    return 2 * x\n")
    sys.path.insert(0, str(src))
    try:
        module = importlib.import_module(name)
        importable_on_nodes(name)  # declared importable on the nodes (by reference), but it is not
        shutil.rmtree(src)
        with poolparty.Executor(1, queue="local", work_root=tmp_path / "runs") as ex:
            fut = ex.submit(module.double, 2)
            with pytest.raises(ModuleNotFoundError, match=name):
                fut.result(timeout=120)
    finally:
        sys.path.remove(str(src))
        sys.modules.pop(name, None)


@pytest.fixture
def made_modules():
    """Modules made from source text, registered in sys.modules under fresh names (removed after)."""
    made: list[str] = []

    def make(short: str, source: str) -> types.ModuleType:
        name = f"pp_walk_{short}_{uuid.uuid4().hex[:8]}"
        module = types.ModuleType(name)
        sys.modules[name] = module
        made.append(name)
        exec(compile(textwrap.dedent(source), f"/nowhere/{short}.py", "exec"), vars(module))
        return module

    yield make
    for name in made:
        sys.modules.pop(name, None)


def reached(*objects) -> set[str]:
    found = ModuleWalk(lambda m: m.__name__.startswith("pp_walk_")).add(objects).run()
    return {name.split("_")[2] for name in found}


def test_the_walk_follows_what_cloudpickle_carries_by_value(made_modules):
    b = made_modules("b", "class Thing:\n    pass\ndef g(x):\n    return x\n")
    c = made_modules("c", "def h(x):\n    return x\n")
    a = made_modules("a", "def f(x):\n    return B.g(x)\n")
    a.B = b  # `import b as B`: a module object, reached whole
    d = made_modules("d", "def k(x, fn=None):\n    return fn(x)\n")
    made_modules("e", "def never(x):\n    return x\n")
    assert reached(a.f) == {"a", "b"}  # a chain: a's function names the module b
    assert reached(functools.partial(d.k, fn=c.h)) == {"d", "c"}  # a partial's function and keywords
    assert reached(lambda x, fn=c.h: fn(x)) == {"c"}  # a default
    assert reached(b.Thing) == {"b"}

    def closure(x):
        return a.f(x)  # a closure cell holding a module object of the user's
    assert reached(closure) == {"a", "b"}
    assert "e" not in reached(a.f, d.k)  # what no code names does not travel


def test_the_walk_stops_at_installed_code_and_local_modules_exclude_compiled_ones(made_modules):
    import json

    from poolparty.engine.by_value import _is_local_module

    b = made_modules("b", "def g(x):\n    return x\n")
    assert reached(functools.partial(json.dumps, default=b.g)) == {"b"}  # an installed function's argument
    assert reached(json.dumps) == set()  # not followed into the standard library
    compiled = types.ModuleType("pp_compiled")
    compiled.__file__ = "/home/me/proj/pp_compiled.cpython-311-x86_64-linux-gnu.so"
    plain = types.ModuleType("pp_plain")
    plain.__file__ = "/home/me/proj/pp_plain.py"
    assert not _is_local_module(compiled) and _is_local_module(plain)
