"""A task's own BaseException (sys.exit, KeyboardInterrupt, GeneratorExit) is the task's outcome: it
comes back to the caller with its type and code at once, never taken for an infrastructure failure."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import poolparty
from conftest import ALL_KINDS


def exit_on_three(args):
    x, markers = args
    Path(markers, f"{x}-ran").touch(exist_ok=False)  # a second run of a task fails loudly
    if x == 3:
        sys.exit(3)
    return x


def raise_base(kind):
    raise {"interrupt": KeyboardInterrupt("from the task"), "generator": GeneratorExit("from the task")}[kind]


class ExitsWhilePickled:
    def __reduce__(self):
        sys.exit(4)


def exit_while_pickling_result(_):
    return ExitsWhilePickled()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_sys_exit_in_a_task_comes_back_as_system_exit_without_resubmission(kind, make_queue_under_test, tmp_path):
    q = make_queue_under_test(kind)
    markers = tmp_path / "markers"
    markers.mkdir()
    with poolparty.Pool(max_running=2, **q.pool_options()) as pool:
        with pytest.raises(SystemExit) as err:
            pool.map(exit_on_three, [(x, str(markers)) for x in range(6)], chunksize=2)
        stats = dict(pool.engine.stats)
    assert err.value.code == 3
    assert stats["resubmissions"] == 0
    assert sorted(p.name for p in markers.iterdir()) == [f"{x}-ran" for x in range(6)]


@pytest.mark.parametrize("which,error", [("interrupt", KeyboardInterrupt), ("generator", GeneratorExit)])
def test_keyboard_interrupt_and_generator_exit_raised_by_a_task_keep_their_type(which, error):
    with poolparty.Pool(max_running=1, queue="local") as pool:
        with pytest.raises(error, match="from the task"):
            pool.apply(raise_base, (which,))
        assert pool.engine.stats["resubmissions"] == 0


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_sys_exit_while_the_result_is_pickled_comes_back_as_system_exit(kind, make_queue_under_test):
    """ProcessPoolExecutor: SystemExit ("exit during result pickle on worker"); our Pool the same (where
    multiprocessing's worker dies and the call hangs)."""
    q = make_queue_under_test(kind)
    with poolparty.Executor(max_workers=1, **q.pool_options()) as ex:
        fut = ex.submit(exit_while_pickling_result, 0)
        with pytest.raises(SystemExit) as err:
            fut.result(timeout=120)
        assert ex.engine.stats["resubmissions"] == 0
    assert err.value.code == 4
    with poolparty.Pool(1, **q.pool_options()) as pool:
        with pytest.raises(SystemExit) as err:
            pool.apply(exit_while_pickling_result, (0,))
        assert pool.engine.stats["resubmissions"] == 0
    assert err.value.code == 4


def exit_with(code):
    sys.exit(code)


@pytest.mark.parametrize("kind", ["local", "fake-slurm"])
def test_sys_exit_in_a_submitted_call_comes_back_as_system_exit(kind, make_queue_under_test):
    """ProcessPoolExecutor: "exit during func execution on worker" is SystemExit on the future."""
    q = make_queue_under_test(kind)
    with poolparty.Executor(max_workers=1, **q.pool_options()) as ex:
        futures = [ex.submit(exit_with, 5), ex.submit(exit_with, "message")]
        codes = [f.exception(timeout=120) for f in futures]
        assert ex.engine.stats["resubmissions"] == 0
    assert [type(e) for e in codes] == [SystemExit, SystemExit]
    assert [e.code for e in codes] == [5, "message"]
