"""What travels to a worker: cloudpickle sends functions by value, and the user's own modules (which
the worker, with another cwd and sys.path, cannot import) are registered to travel by value too."""
from __future__ import annotations

import functools
import importlib
import os
import shutil
import sys
import textwrap
import uuid

import pytest

import poolparty


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        return self.factor * x

    def __call__(self, x):
        return self.factor * x + 1


def power(base, exponent):
    return base ** exponent


@pytest.fixture
def pool(tmp_path):
    p = poolparty.Pool(2, queue="local", work_root=tmp_path / "work")
    yield p
    p.terminate()


@pytest.fixture
def ex(tmp_path):
    e = poolparty.Executor(2, queue="local", work_root=tmp_path / "work")
    yield e
    e.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def user_module(tmp_path):
    """A module written now into tmp_path and imported through sys.path, like a script's sibling, then
    deleted: the driver's import path travels to the node (a task's own ``import`` finds the user's
    directories there), so only a file that is gone proves that the module itself travelled by value."""
    name = f"pp_user_mod_{uuid.uuid4().hex[:12]}"  # fresh each time: nothing registered before
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{name}.py").write_text(textwrap.dedent('''
        import importlib.util
        import os

        OFFSET = 100

        def shift(x, by=OFFSET):
            return x + by

        def importable_here():
            """Run on the worker: can it import this module itself? (It must not need to.)"""
            return importlib.util.find_spec(__name__) is not None

        def where():
            return os.getpid(), os.getcwd()

        class Box:
            def __init__(self, v):
                self.v = v

            def get(self, extra=0):
                return self.v + extra

        def init(value):
            os.environ["PP_USER_MOD_INIT"] = value

        def read_init(_x=None):
            return os.environ.get("PP_USER_MOD_INIT")
    '''))
    sys.path.insert(0, str(src))
    try:
        module = importlib.import_module(name)
        shutil.rmtree(src)
        yield module
    finally:
        sys.path.remove(str(src))
        sys.modules.pop(name, None)


def test_lambdas(pool, ex):
    mapped = pool.map_async(lambda x: x * 3, range(4), 4)
    applied = pool.apply_async(lambda a, b=1: a - b, (10,), {"b": 4})
    submitted = ex.submit(lambda: "from a lambda")
    assert pool.starmap(lambda a, b: a * b, [(2, 3), (4, 5)], 2) == [6, 20]
    assert list(ex.map(lambda x, y: x + y, [1, 2], [10, 20], chunksize=2)) == [11, 22]
    assert mapped.get(8) == [0, 3, 6, 9]
    assert applied.get(8) == 6
    assert submitted.result(timeout=8) == "from a lambda"


def test_closures_over_local_variables(pool, ex):
    offset = 7
    table = {"a": 1, "b": 2}

    def lookup(key):
        return table[key] + offset

    futures = [ex.submit(lambda x, k=k: x * k, 10) for k in range(3)]  # one default per lambda
    single = ex.submit(lookup, "b")
    assert pool.map(lookup, ["a", "b"], 2) == [8, 9]
    assert single.result(timeout=8) == 9
    assert [f.result(timeout=8) for f in futures] == [0, 10, 20]


def test_functions_defined_inside_the_test(pool, ex):
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)  # refers to itself

    class Local:
        def __init__(self, v):
            self.v = v

    def wrap(x):
        return Local(x)

    submitted = ex.submit(fib, 10)
    boxed = pool.apply_async(wrap, (5,))
    assert pool.map(fib, range(8), 8) == [0, 1, 1, 2, 3, 5, 8, 13]
    assert submitted.result(timeout=8) == 55
    assert type(boxed.get(8)).__name__ == "Local" and boxed.get(8).v == 5


def test_function_from_a_module_the_worker_cannot_import(pool, ex, user_module):
    assert user_module.importable_here() is True  # here it is, on sys.path
    # on the worker (other cwd, other sys.path) the module is not importable, yet its functions run
    importable = pool.apply_async(user_module.importable_here)
    shifted = pool.apply_async(user_module.shift, (1,), {"by": 2})
    where = pool.apply_async(user_module.where)
    importable_ex = ex.submit(user_module.importable_here)
    submitted = ex.submit(user_module.shift, 5)
    assert pool.map(user_module.shift, [1, 2, 3], 3) == [101, 102, 103]
    assert list(ex.map(user_module.shift, [1, 2], [0, 1], chunksize=2)) == [1, 3]
    assert importable.get(8) is False and importable_ex.result(timeout=8) is False
    assert shifted.get(8) == 3 and submitted.result(timeout=8) == 105
    pid, cwd = where.get(8)
    assert pid != os.getpid() and cwd != os.getcwd()


def test_initializer_from_a_module_the_worker_cannot_import(tmp_path, user_module):
    with poolparty.Pool(1, initializer=user_module.init, initargs=("set",), queue="local",
                        work_root=tmp_path / "work") as pool:
        # apply first: the call is wrapped with the initializer, the module must still travel by value
        assert pool.apply(user_module.shift, (1,)) == 101
        assert pool.apply(user_module.read_init) == "set"
        assert pool.map(user_module.read_init, [0, 1]) == ["set", "set"]


def test_functools_partial(pool, ex, user_module):
    to_int = functools.partial(int, base=2)
    cube = functools.partial(power, exponent=3)  # a function of this test module
    shift = functools.partial(functools.partial(user_module.shift), by=1000)  # of an unimportable module
    futures = [ex.submit(to_int, "1000"), ex.submit(cube, 4), ex.submit(shift, 4)]
    applied = pool.apply_async(shift, (3,))
    assert pool.map(to_int, ["101", "11"], 2) == [5, 3]
    assert pool.map(cube, [1, 2, 3], 3) == [1, 8, 27]
    assert pool.map(shift, [1, 2], 2) == [1001, 1002]
    assert list(ex.map(shift, [5])) == [1005]
    assert applied.get(8) == 1003
    assert [f.result(timeout=8) for f in futures] == [8, 64, 1004]


def test_instance_methods(pool, ex, user_module):
    s = Scaler(4)
    box = user_module.Box(7)
    futures = [ex.submit(s.scale, 10), ex.submit(box.get)]
    applied = pool.apply_async(box.get, (), {"extra": 1})
    assert pool.map(s.scale, [1, 2, 3], 3) == [4, 8, 12]
    assert pool.map(s, [1, 2], 2) == [5, 9]  # a callable instance
    assert pool.map(box.get, [1, 2], 2) == [8, 9]
    assert applied.get(8) == 8
    assert [f.result(timeout=8) for f in futures] == [40, 7]


def test_results_only_cloudpickle_can_pickle_come_back_from_a_by_reference_task(pool):
    """A function the worker imports by reference does not load cloudpickle there (a faster start); a
    result plain pickle refuses (here a lambda made on the node) falls back to cloudpickle."""
    no_cloudpickle = functools.partial(eval, "'cloudpickle' not in __import__('sys').modules")
    assert pool.apply(no_cloudpickle) is True
    make_lambda = functools.partial(eval, "lambda: 42")
    assert pool.apply(make_lambda)() == 42


def test_results_of_classes_that_travelled_by_value(pool, user_module):
    """A result whose class exists only by value on the node (defined in a function, or in the user's
    module the node cannot import) comes back as that class."""
    class Point:
        def __init__(self, x):
            self.x = x

    def make(x):
        return Point(x)

    got = pool.map(make, [1, 2])
    assert [type(p).__name__ for p in got] == ["Point", "Point"] and [p.x for p in got] == [1, 2]
    boxes = pool.map(user_module.Box, [3])
    assert type(boxes[0]).__name__ == "Box" and boxes[0].get() == 3
