"""The store's names and run-dir life: every on-disk name built and parsed in one place, one removal that
takes only what poolparty made, one run lock whose holder a second process sees."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import poolparty
from poolparty.store import layout
from poolparty.store.incoming import chunk_files, publish, recorded_tasks
from poolparty.store import records
from poolparty.store.journal import Journal, StoredChunks, replay
from poolparty.resources import Resources
from poolparty.store.run_dir import RunDir, complete_batches, is_run_dir, remove_run_dir
from poolparty.store.run_info import read_result_limit, read_run_info, write_run_info
from poolparty.store.run_lock import RunLock, holder, try_lock


@pytest.mark.parametrize("chunk,sub", [(0, 0), (7, 3), (12345, 99)])
def test_part_and_done_names_round_trip(chunk, sub):
    for done in (False, True):
        name = layout.part_name(chunk, sub, done=done)
        assert layout.parse_part_name(name) == (chunk, sub)
        assert layout.is_done_name(name) is done
    part = layout.part_path(Path("/x/incoming"), chunk, sub)
    assert part.name == f"c{chunk}.s{sub}.part"
    assert layout.done_path(part).name == f"c{chunk}.s{sub}.done"


@pytest.mark.parametrize("name", ["j123.log", "c1.part", "cx.s1.part", "c1.s2.s3.done", "c1.s2.tmp", "d1.s2.part",
                                  "c1.sx.done", ""])
def test_other_names_are_not_part_names(name):
    assert layout.parse_part_name(name) is None


def test_a_chunks_files_are_found_among_others_finished_first():
    names = ["c1.s0.part", "c12.s0.done", "c1.s1.done", "j5_1.log", "c1.s2.part.tmp", "c10.s0.part", "meta.json"]
    assert layout.chunk_file_names(names, 1) == ["c1.s1.done", "c1.s0.part"]
    assert layout.chunk_file_names(names, 12) == ["c12.s0.done"]


@pytest.mark.parametrize("element", ["123", "123_4", "77.5", "local-9"])
def test_job_log_names_round_trip(element):
    name = layout.job_log_name(element)
    assert name == f"j{element}.log"
    assert name[1:-4] == element


class RecordingCLI:
    """Stands in for the scheduler commands: records each argv, answers a job id."""

    def __init__(self):
        self.argvs: list[list[str]] = []

    def require(self, program: str, queue: str) -> None:
        pass

    def run(self, argv, **kwargs):
        self.argvs.append(list(argv))
        return SimpleNamespace(stdout="42\n")


@pytest.mark.parametrize("kind,placeholders", [("slurm", ["%A_%a", "%j"]), ("sge", ["$JOB_ID.$TASK_ID", "$JOB_ID"])],
                         ids=["percent-placeholders", "dollar-placeholders"])  # no scheduler needed: not -k slurm
def test_schedulers_render_their_log_pattern_from_the_one_name(tmp_path, kind, placeholders):
    from poolparty.queues.base import ArrayRequest
    from poolparty.queues.arrays import ArrayPart
    from poolparty.queues.sge import SgeQueue
    from poolparty.queues.slurm import SlurmQueue

    cli = RecordingCLI()
    queue = {"slurm": SlurmQueue, "sge": SgeQueue}[kind](cli)
    request = ArrayRequest(name="pp-x", part=ArrayPart(0, (1, 2)), throttle=2, resources=Resources(),
                           script=tmp_path / "job.sh", worker_argv=("py",), workdir=tmp_path, log_dir=tmp_path)
    queue.submit(request)  # an array
    queue.submit(request, array=False)  # one job per chunk
    logs = [a.removeprefix("--output=") for argv in cli.argvs for a in argv if a.endswith(".log")]
    assert logs == [f"{tmp_path}/{layout.job_log_name(p)}" for p in placeholders[:1] + placeholders[1:] * 2]
    assert queue.log_path(tmp_path, "42_1") == tmp_path / layout.job_log_name("42_1")


def test_batch_dirs_round_trip_and_only_complete_ones_are_listed(tmp_path):
    run = RunDir(tmp_path / "run")
    for number in (1, 2, 10):
        d = run.batch_dir(number)
        assert d == layout.batch_dir(run.path, number)
        assert layout.parse_batch_dir_name(d.name) == number
        assert layout.run_of_batch(d) == run.path
        d.mkdir()
    (run.batch_dir(1) / layout.META_FILE).write_text("{}")
    (run.batch_dir(10) / layout.META_FILE).write_text("{}")
    (run.batches / "notes").mkdir()
    assert layout.batch_dir_name(2) == "0002"
    assert complete_batches(run.path) == [(1, run.batch_dir(1)), (10, run.batch_dir(10))]
    paths = layout.BatchPaths(run.batch_dir(1))
    assert paths.run == run.path
    assert paths.incoming == run.batch_dir(1) / "incoming"


def test_removal_takes_only_poolparty_files(tmp_path):
    with poolparty.Pool(queue="local", work_dir=tmp_path / "wd", keep_work_dir=True) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
    wd = tmp_path / "wd"
    (wd / "mine.txt").write_text("the user's")
    (wd / "results").mkdir()
    assert is_run_dir(wd)
    remove_run_dir(wd)
    assert sorted(p.name for p in wd.iterdir()) == ["mine.txt", "results"]
    assert (wd / "mine.txt").read_text() == "the user's"
    (wd / "mine.txt").unlink()
    (wd / "results").rmdir()
    RunDir(wd).lock()  # made again, then removed with nothing of the user's left: the directory goes
    remove_run_dir(wd)
    assert not wd.exists()


def test_a_second_holder_sees_the_first_holders_name(tmp_path):
    run = RunDir(tmp_path / "run")
    assert holder(run.path) is None
    run.lock()
    try:
        expected = f"pid {os.getpid()} on {os.uname().nodename}"
        code = textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from poolparty.errors import WorkDirInUseError
            from poolparty.store.run_lock import RunLock, holder, try_lock
            run = Path({str(run.path)!r})
            with try_lock(run) as who:
                print(who)
            print(holder(run))
            try:
                RunLock(run).take()
            except WorkDirInUseError as e:
                print(e)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.splitlines()
        assert out[0] == expected and out[1] == expected
        assert f"in use by another live pool ({expected})" in out[2]
    finally:
        run.unlock()
    assert holder(run.path) is None
    with try_lock(run.path) as who:
        assert who is None
        second = RunLock(run.path)
        with pytest.raises(poolparty.WorkDirInUseError):  # flock is per open file: the block holds it
            second.take()


def test_run_info_round_trip(tmp_path):
    assert read_run_info(tmp_path) == {} and read_result_limit(tmp_path) is None
    write_run_info(tmp_path, job_name="pp-1", queue="slurm", python="/usr/bin/python3", max_running=4, array=True,
                   max_resubmissions=2, resources={"cpus": 2}, max_result_size=1024)
    info = read_run_info(tmp_path)
    assert (info["job_name"], info["queue"], info["max_running"], info["resources"]) == ("pp-1", "slurm", 4,
                                                                                         {"cpus": 2})
    assert read_result_limit(tmp_path) == 1024
    (tmp_path / layout.RUN_INFO_FILE).write_text("[1, 2]")
    assert read_run_info(tmp_path) == {}


def test_the_journal_is_read_the_same_by_driver_status_and_worker(tmp_path):
    path = tmp_path / layout.JOURNAL_FILE
    journal = Journal(path)
    journal.record_submission(0, "100", [0, 1], ["100_0", "100_1"], Resources(cpus=2))
    journal.record_submission(1, "101", [1], ["101"], Resources(cpus=4))
    journal.record_give_up(0, "node failure")
    stored = StoredChunks(path)
    assert 1 not in stored
    journal.record_stored([1])
    journal.close()
    assert 1 in stored and 0 not in stored  # read on from where it stopped
    state = replay(path)
    assert state.next_sub == 2 and state.stored == {1}
    assert state.first_resources == Resources(cpus=2)
    assert [(a.sub, a.job, a.element) for a in state.chunks[1].attempts] == [(0, "100", "100_1"), (1, "101", "101")]
    assert state.chunks[1].resubmissions == 1 and state.chunks[1].element == "101"
    assert state.chunks[0].gave_up == "node failure"


def test_recorded_tasks_and_publish(tmp_path):
    incoming = tmp_path
    with records.RecordWriter(layout.part_path(incoming, 3, 0)) as w:
        w.append({"runner": 3, "job": "j"})
        w.append({"task": 30, "ok": True}, b"x")
    with records.RecordWriter(layout.part_path(incoming, 3, 1)) as w:
        w.append({"task": 31, "ok": True}, b"y")
    with records.RecordWriter(layout.part_path(incoming, 13, 0)) as w:
        w.append({"task": 130, "ok": True}, b"z")
    publish(layout.part_path(incoming, 3, 1))
    assert [p.name for p in chunk_files(incoming, 3)] == ["c3.s1.done", "c3.s0.part"]
    assert recorded_tasks(incoming, 3) == {30, 31}


def test_published_chunks_are_those_with_a_done_file(tmp_path):
    """The poller leaves these out of the elements whose end it asks the scheduler's accounting about."""
    from poolparty.store.incoming import published_chunks
    from poolparty.store.layout import part_name

    assert published_chunks(tmp_path / "gone") == set()
    for chunk, done in ((1, True), (2, False), (3, True)):
        (tmp_path / part_name(chunk, 1, done=done)).touch()
    (tmp_path / "j12.3.log").touch()
    assert published_chunks(tmp_path) == {1, 3}
