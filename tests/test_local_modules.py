"""A script's own modules reach the nodes: a sibling module and a chain of two (script -> a -> b) by value
(the script's directory renamed away first, so no node can import from it), and an ``import`` inside a
task through the driver's import path, as ``multiprocessing`` runs them."""
from __future__ import annotations

import pytest

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
