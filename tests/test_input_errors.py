"""Bad input fails at once, before anything is submitted, with a message that says what is wrong."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import poolparty
from poolparty.resources import Resources

from conftest import CLUSTER_KINDS


def identity(x):
    return x


def job_files(work_dir) -> list[Path]:
    """Every trace of a started job: batch directories and worker/log files in their incoming/."""
    batches = Path(work_dir) / "batches"
    return sorted(batches.glob("*")) + sorted(batches.glob("*/incoming/*"))


def started_files(work_dir) -> list[Path]:
    return [p for p in Path(work_dir).glob("batches/*/incoming/*") if p.suffix in (".log", ".part", ".done")]


# -- unpicklable arguments and functions -----------------------------------------------------------
POOL_CALLS = {
    "map": lambda p, f, arg: p.map(f, [1, arg]),
    "map_async": lambda p, f, arg: p.map_async(f, [arg]),
    "starmap": lambda p, f, arg: p.starmap(f, [(arg,)]),
    "imap": lambda p, f, arg: p.imap(f, [arg]),
    "imap_unordered": lambda p, f, arg: p.imap_unordered(f, [arg]),
    "apply": lambda p, f, arg: p.apply(f, (arg,)),
    "apply_async": lambda p, f, arg: p.apply_async(f, (arg,)),
    "apply_async_kwds": lambda p, f, arg: p.apply_async(f, (), {"x": arg}),
}
EXECUTOR_CALLS = {
    "submit": lambda e, f, arg: e.submit(f, arg),
    "submit_kwargs": lambda e, f, arg: e.submit(f, x=arg),
    "map": lambda e, f, arg: e.map(f, [arg]),
}


def _assert_nothing_started(work_dir):
    time.sleep(0.1)  # longer than the call-coalescing window: a wrongly queued call would be on disk
    assert started_files(work_dir) == []
    assert job_files(work_dir) == []


def raised_by(call):
    """The exception of a call: raised at once, or by what it returned (``get()``, ``next()``,
    ``result()``), where multiprocessing and concurrent.futures raise it for some calls."""
    try:
        out = call()
        if hasattr(out, "get"):
            out.get(timeout=8)
        elif hasattr(out, "result"):
            out.result(timeout=8)
        elif hasattr(out, "__next__"):
            next(out)
    except Exception as e:
        return e
    raise AssertionError("no exception")


class RefusesPickling:
    def __reduce__(self):
        raise ZeroDivisionError("refuses to be pickled")


@pytest.mark.parametrize("how", sorted(POOL_CALLS))
def test_pool_unpicklable_argument_raises_the_picklers_own_error(pool, how):
    """As multiprocessing: the pickler's own exception, whatever its type (a lock: TypeError; an object
    whose __reduce__ raises: that exception)."""
    for arg, error, words in ((threading.Lock(), TypeError, "lock"), (RefusesPickling(), ZeroDivisionError,
                                                                       "refuses")):
        e = raised_by(lambda: POOL_CALLS[how](pool, identity, arg))
        assert type(e) is error and words in str(e)
        assert any("poolparty" in note for note in getattr(e, "__notes__", []))  # says what to do
    if how.startswith("apply_async"):  # as multiprocessing: the error comes from get(), and error_callback
        seen = []
        res = pool.apply_async(identity, (threading.Lock(),), error_callback=seen.append)
        assert res.ready() and not res.successful() and type(seen[0]) is TypeError
    _assert_nothing_started(pool.work_dir)
    if how.startswith("apply"):  # still usable, the same way
        assert pool.apply(identity, (3,)) == 3
    else:
        assert pool.map(identity, [1, 2], chunksize=2) == [1, 2]


@pytest.mark.parametrize("how", sorted(EXECUTOR_CALLS))
def test_executor_unpicklable_argument_raises_the_picklers_own_error(ex, how):
    for arg, error in ((threading.Lock(), TypeError), (RefusesPickling(), ZeroDivisionError)):
        assert type(raised_by(lambda: EXECUTOR_CALLS[how](ex, identity, arg))) is error
    if how.startswith("submit"):  # as ProcessPoolExecutor: submit returns, the future holds the error
        fut = EXECUTOR_CALLS[how](ex, identity, threading.Lock())
        assert fut.done() and type(fut.exception()) is TypeError
    _assert_nothing_started(ex.work_dir)
    if how.startswith("submit"):  # still usable, the same way
        assert ex.submit(identity, 1).result(timeout=8) == 1
    else:
        assert list(ex.map(identity, [2])) == [2]


def _unpicklable_function():
    lock = threading.Lock()

    def guarded(x=None):
        with lock:
            return x

    return guarded


def test_pool_unpicklable_function(pool):
    fn = _unpicklable_function()
    for how in ("map", "apply_async", "imap"):
        e = raised_by(lambda: POOL_CALLS[how](pool, fn, 1))
        assert type(e) is TypeError and "lock" in str(e)
        assert any("guarded" in note for note in e.__notes__)
    _assert_nothing_started(pool.work_dir)
    assert pool.map(identity, [1]) == [1]


def test_executor_unpicklable_function(ex):
    fn = _unpicklable_function()
    for how in ("submit", "map"):
        e = raised_by(lambda: EXECUTOR_CALLS[how](ex, fn, 1))
        assert type(e) is TypeError and "lock" in str(e)
        assert any("guarded" in note for note in e.__notes__)
    _assert_nothing_started(ex.work_dir)
    assert ex.submit(identity, 5).result(timeout=8) == 5


def test_configuration_error_is_a_valueerror():
    assert issubclass(poolparty.ConfigurationError, ValueError)
    assert issubclass(poolparty.UnknownResourceError, poolparty.ConfigurationError)


# -- bad options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", [poolparty.Pool, poolparty.Executor])
def test_unknown_option_lists_the_valid_names(tmp_path, factory):
    with pytest.raises(poolparty.UnknownResourceError) as info:
        factory(queue="local", work_root=tmp_path, memroy="1GB")
    message = str(info.value)
    assert "memroy" in message
    for name in Resources.names():
        assert name in message
    for name in ("queue", "work_root", "max_running"):
        assert name in message
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_unknown_per_call_resource(pool, ex):
    with pytest.raises(poolparty.UnknownResourceError, match="memory"):
        pool.map(identity, [1], resources={"memroy": "1GB"})
    with pytest.raises(poolparty.UnknownResourceError, match="walltime"):
        pool.apply_async(identity, (1,), resources={"wallclock": "1:00"})
    with pytest.raises(poolparty.UnknownResourceError, match="memory"):
        ex.submit_with(identity, (1,), resources={"memroy": "1GB"})
    _assert_nothing_started(pool.work_dir)
    _assert_nothing_started(ex.work_dir)


@pytest.mark.parametrize("factory", [poolparty.Pool, poolparty.Executor])
def test_unknown_queue_lists_the_valid_queues(tmp_path, factory):
    with pytest.raises(poolparty.ConfigurationError) as info:
        factory(queue="nonsense", work_root=tmp_path)
    message = str(info.value)
    assert "nonsense" in message
    for name in ("local", "slurm", "sge"):
        assert name in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option,value", [("memory", "lots"), ("walltime", "soon"), ("memory", -1),
                                          ("walltime", "1:xx"), ("cpus", 0), ("memory", True)])
def test_bad_resource_values(tmp_path, option, value):
    with pytest.raises(poolparty.ConfigurationError) as info:
        poolparty.Pool(queue="local", work_root=tmp_path, **{option: value})
    assert option in str(info.value)
    with pytest.raises(poolparty.ConfigurationError):
        poolparty.Executor(queue="local", work_root=tmp_path, **{option: value})
    assert list(tmp_path.iterdir()) == []


def test_bad_resource_values_per_call(pool):
    with pytest.raises(poolparty.ConfigurationError, match="memory"):
        pool.map(identity, [1], resources={"memory": "lots"})
    with pytest.raises(poolparty.ConfigurationError, match="walltime"):
        pool.apply_async(identity, (1,), resources={"walltime": "soon"})
    _assert_nothing_started(pool.work_dir)


@pytest.mark.parametrize("factory", [poolparty.Pool, poolparty.Executor])
def test_python_path_must_be_absolute(tmp_path, factory):
    with pytest.raises(poolparty.ConfigurationError, match="absolute") as info:
        factory(queue="local", work_root=tmp_path, python_path="python3")
    assert "python3" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("factory", [poolparty.Pool, poolparty.Executor])
def test_a_missing_interpreter_is_refused_before_the_local_queue_starts_a_job(tmp_path, factory):
    """It used to be found only when every job failed to start."""
    with pytest.raises(poolparty.ConfigurationError, match="not an executable file") as info:
        factory(queue="local", work_root=tmp_path, python_path=str(tmp_path / "no-such-python"))
    assert "no-such-python" in str(info.value) and "sys.executable" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_good_values_are_accepted(tmp_path):
    with poolparty.Pool(1, queue="local", work_root=tmp_path, memory="1GB", walltime="0:05:00",
                        cpus=1) as pool:
        assert pool.map(identity, ["ok"]) == ["ok"]


# PBS and LSF have no dry-run submission: a request no node can hold is refused by qsub/bsub themselves
@pytest.mark.parametrize("kind", [k for k in CLUSTER_KINDS if k not in ("fake-pbs", "fake-lsf")])
def test_impossible_resources_are_refused_before_anything_is_submitted(kind, make_queue_under_test, tmp_path):
    """The scheduler is asked first (sbatch --test-only, qsub -w v), once per distinct request: more CPUs
    than any node has fails with the scheduler's words and its limits, and nothing is queued."""
    q = make_queue_under_test(kind)
    submit_cmd = "sbatch" if q.flavor == "slurm" else "qsub"
    dry_run = "--test-only" if q.flavor == "slurm" else "-w"

    def submissions() -> list[dict]:
        return q.calls(submit_cmd)

    def dry_runs() -> list[dict]:
        return [c for c in q.calls(submit_cmd, dry_runs=True) if dry_run in c["argv"]]

    with poolparty.Pool(2, **q.pool_options()) as pool:
        with pytest.raises(poolparty.errors.ImpossibleResourceError) as e:
            pool.map(identity, range(4), resources={"cpus": 64})
        message = str(e.value)
        assert "cpus=64" in message and "Nothing was submitted" in message, message
        assert "poolparty doctor" in message and q.flavor.upper() in message, message
        if not q.fake:  # the scheduler's own limits are quoted
            assert ("CPUs" in message) if q.flavor == "slurm" else ("slots" in message), message
        assert submissions() == [] and len(dry_runs()) == 1
        assert not list(pool.engine.work_dir.glob("batches/*/incoming/*"))
        # a request that fits is asked about once, then submitted for every map
        for _ in range(2):
            assert pool.map(identity, range(4), resources={"cpus": 2}) == [0, 1, 2, 3]
        assert len(dry_runs()) == 2 and len(submissions()) == 2
        # the scheduler's defaults are never asked about
        assert pool.map(identity, range(2)) == [0, 1]
        assert len(dry_runs()) == 2


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_an_interpreter_missing_on_the_node_is_reported_as_such(kind, make_queue_under_test, tmp_path):
    """On a cluster python_path is checked on the node (the login node's files prove nothing there): the job
    script says it is missing, and the failure names it and the fix instead of a bare exit status."""
    q = make_queue_under_test(kind)
    missing = tmp_path / "not-on-the-nodes" / "python3"
    with poolparty.Pool(2, **q.pool_options(python_path=str(missing), max_resubmissions=0)) as pool:
        with pytest.raises(poolparty.RetryLimitExceeded) as e:
            pool.map(identity, range(2))
    message = str(e.value)
    assert f"python_path '{missing}' is not an executable file on node " in message, message
    assert "set python_path to an interpreter that exists on the nodes" in message, message
