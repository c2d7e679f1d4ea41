"""The local queue: the command line of an element, how an exit becomes a JobState, the running limit,
walltime, cancel, and what ``poolparty status|cancel`` read of a run's recorded workers."""
import json
import os
import time
from pathlib import Path

import pytest

from poolparty import Resources
from poolparty.queues import QUEUE_NAMES, make_queue, queue_class
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.base import ArrayRequest
from poolparty.queues.cli import SchedulerCLI
from poolparty.queues.local import INDEX_ENV, LocalQueue, element_argv, ended_state
from poolparty.queues.states import JobState, JobStatus

WORKER = ("/usr/bin/python3", "-m", "poolparty.node.worker", "/runs/r1/batches/0001", "--sub", "3")


def request(tmp_path: Path, indices=(0, 1, 2), offset=0, throttle=10, script="exit 0", resources=Resources(),
            worker_argv=WORKER) -> ArrayRequest:
    job = tmp_path / "job.sh"
    job.write_text(script + "\n")
    (tmp_path / "logs").mkdir(exist_ok=True)
    return ArrayRequest(name="pp-local", part=ArrayPart(offset, tuple(indices)), throttle=throttle,
                        resources=resources, script=job, worker_argv=worker_argv, workdir=tmp_path,
                        log_dir=tmp_path / "logs")


def wait_for(queue: LocalQueue, name: str, done, timeout: float = 20.0) -> dict[str, JobStatus]:
    deadline = time.monotonic() + timeout
    while True:
        states = queue.query(name)
        if done(states) or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


@pytest.fixture
def queue():
    q = LocalQueue()
    yield q
    q.cancel([], name="pp-local")
    q.close()


# -- pure decisions ------------------------------------------------------------------------------------
def test_element_argv_array_and_plain(tmp_path):
    r = request(tmp_path, (0, 1), offset=40)
    assert element_argv(r, 1, array=True) == ["/bin/sh", str(tmp_path / "job.sh"), *WORKER,
                                              "--offset", "40", "--index-env", INDEX_ENV]
    assert element_argv(r, 1, array=False) == ["/bin/sh", str(tmp_path / "job.sh"), *WORKER, "--chunk", "41"]


def test_ended_state():
    assert ended_state(0, None) is JobState.COMPLETED
    assert ended_state(3, None) is JobState.FAILED
    assert ended_state(-15, JobState.TIMEOUT) is JobState.TIMEOUT
    assert ended_state(0, JobState.CANCELLED) is JobState.CANCELLED  # killed, even if it exited cleanly


def test_adapter_facts():
    assert LocalQueue.runs_on_this_host and not queue_class("slurm").runs_on_this_host
    fields, extra = LocalQueue.translate_workflow({}, {"cpus": 2, "memory": 10**9}, Resources(extra=("--x",)))
    assert (fields, extra) == ({"cpus": 2, "memory": 10**9, "partition": None, "account": None, "qos": None}, ())
    q = make_queue("local", SchedulerCLI())
    try:
        assert isinstance(q, LocalQueue) and q.max_array_index() is None
    finally:
        q.close()
    assert QUEUE_NAMES[0] == "local"


# -- the embedded scheduler ------------------------------------------------------------------------------
def test_exit_codes_become_states_and_elements_name_the_chunks(queue, tmp_path):
    script = f'echo "index ${INDEX_ENV}"; [ "${INDEX_ENV}" = 1 ] && exit 3; exit 0'
    [sub] = queue.submit(request(tmp_path, (0, 1), offset=7, script=script))
    assert sub.job_id == "L1" and sub.elements == {7: "L1_0", 8: "L1_1"}
    states = wait_for(queue, "pp-local", lambda s: all(not v.state.active for v in s.values()))
    assert states == {"L1_0": JobStatus(JobState.COMPLETED), "L1_1": JobStatus(JobState.FAILED)}
    assert queue.log_path(tmp_path / "logs", "L1_1").read_text() == "index 1\n"
    assert queue.query("another-pool") == {}


def test_plain_mode_is_one_job_per_chunk(queue, tmp_path):
    subs = queue.submit(request(tmp_path, (0, 1), offset=3, script='echo "$@" >> "$0.args"'), array=False)
    assert [(s.job_id, s.elements) for s in subs] == [("L1", {3: "L1_0"}), ("L2", {4: "L2_1"})]
    wait_for(queue, "pp-local", lambda s: all(v.state is JobState.COMPLETED for v in s.values()))
    lines = (tmp_path / "job.sh.args").read_text().splitlines()
    assert sorted(line.split()[-1] for line in lines) == ["3", "4"]


def test_throttle_bounds_elements_running_at_once(queue, tmp_path):
    script = 'echo "start $(date +%s.%N)" >> "$0.times"; sleep 0.3; echo "end $(date +%s.%N)" >> "$0.times"'
    queue.submit(request(tmp_path, (0, 1, 2), throttle=1, script=script))
    wait_for(queue, "pp-local", lambda s: len(s) == 3 and all(v.state is JobState.COMPLETED for v in s.values()))
    running = peak = 0
    events = [line.split() for line in (tmp_path / "job.sh.times").read_text().splitlines()]
    assert len(events) == 6
    for _, word in sorted((float(t), word) for word, t in events):
        running += 1 if word == "start" else -1
        peak = max(peak, running)
    assert peak == 1


def test_walltime_is_enforced_and_cancel_ends_a_running_element(queue, tmp_path):
    [sub] = queue.submit(request(tmp_path, (0,), script="sleep 30", resources=Resources(walltime=1)))
    states = wait_for(queue, "pp-local", lambda s: not s["L1_0"].state.active)
    assert states["L1_0"].state is JobState.TIMEOUT
    queue.submit(request(tmp_path, (0,), script="sleep 30"))
    wait_for(queue, "pp-local", lambda s: s.get("L2_0", JobStatus(JobState.PENDING)).state is JobState.RUNNING)
    queue.cancel(["L2"])
    assert wait_for(queue, "pp-local", lambda s: not s["L2_0"].state.active)["L2_0"].state is JobState.CANCELLED


# -- a run's recorded workers, read by another process ----------------------------------------------------
def test_query_run_sees_the_recorded_live_workers_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    driver = LocalQueue()
    try:
        driver.attach(run)
        worker = ("python", "-m", "poolparty.node.worker", str(run / "batches" / "0000"))  # a worker of this run
        driver.submit(request(tmp_path, (0,), script="sleep 30; exit 0", worker_argv=worker))  # sh stays
        wait_for(driver, "pp-local", lambda s: s["L1_0"].state is JobState.RUNNING)
        saved = json.loads((run / "local_queue.json").read_text())
        pid, ticks, name, *_limits = saved["running"]["L1_0"]  # then deadline, memory, marker
        assert LocalQueue.query_run(run, "pp-local", SchedulerCLI()) == {
            "L1_0": JobStatus(JobState.RUNNING, f"pid {pid}")}
        assert LocalQueue.query_run(run, "other-pool", SchedulerCLI()) == {}
        saved["running"]["L9_0"] = [os.getpid(), ticks + 1, "pp-local"]  # a recycled pid: another process
        (run / "local_queue.json").write_text(json.dumps(saved))
        assert list(LocalQueue.query_run(run, "pp-local", SchedulerCLI())) == ["L1_0"]
        driver.cancel([], name="pp-local")
        wait_for(driver, "pp-local", lambda s: not s["L1_0"].state.active)  # the launcher saved it gone
        assert LocalQueue.query_run(run, "pp-local", SchedulerCLI()) == {}
    finally:
        driver.close()
    assert LocalQueue.query_run(tmp_path / "no-such-run", "pp-local", SchedulerCLI()) == {}


def _nap(x):
    time.sleep(3)  # left running by the failed cancel: it ends by itself
    return x


def test_a_failed_cancel_names_the_queues_own_way_to_cancel_by_hand(tmp_path, monkeypatch, caplog):
    """After a disk-full error the local queue used to be told to 'scancel' its jobs."""
    import poolparty

    def cancel_fails(self, job_ids, name=None):
        raise OSError(28, "No space left on device")

    pool = poolparty.Pool(1, queue="local", work_root=tmp_path)
    pool.map_async(_nap, [1])
    monkeypatch.setattr(LocalQueue, "cancel", cancel_fails)
    with caplog.at_level("ERROR", logger="poolparty"):
        pool.terminate()
    monkeypatch.undo()
    said = [r.getMessage() for r in caplog.records if "could not cancel" in r.getMessage()]
    assert said and "No space left on device" in said[0]
    assert "poolparty cancel <work_dir>" in said[0] and "scancel" not in said[0]


@pytest.mark.parametrize("kind,expected", [("slurm", "scancel --name=pp-x"), ("sge", "qdel pp-x")])
def test_each_scheduler_says_how_to_cancel_a_pool_by_hand(kind, expected):
    queue = queue_class(kind).__new__(queue_class(kind))  # no scheduler needed to say it
    assert queue.manual_cancel("pp-x") == expected
