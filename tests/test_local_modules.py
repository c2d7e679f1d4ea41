"""A script's own modules reach the nodes: a sibling module and a chain of two (script -> a -> b) by value
(the script's directory renamed away first, so no node can import from it), and an ``import`` inside a
task through the driver's import path, as ``multiprocessing`` runs them."""
from __future__ import annotations

import importlib
import shutil
import sys
import uuid

import pytest

import poolparty
from poolparty.engine.by_value import importable_on_nodes
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
