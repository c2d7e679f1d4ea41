"""The efficiency report (issue 17, part 3): each adapter's accounting argv and parser on literal output,
the pure arithmetic and the wording of its suggestion, the progress line's summary, ``poolparty report``
(text and ``--json``) on a finished local map, and the one accounting call per report on the real SLURM
and SGE, checked against the scheduler's own accounting."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from recording_cli import RecordingCLI

import poolparty
from conftest import probe, wait_until
from poolparty.api.progress import summary_line
from poolparty.cli.main import main
from poolparty.efficiency import build, memory_text, round_memory
from poolparty.queues.accounting import Accounting, JobUsage, clock_seconds, size_bytes
from poolparty.queues.local import LocalQueue
from poolparty.queues.lsf import LsfQueue, parse_bjobs_usage
from poolparty.queues.pbs import PbsQueue, parse_qstat_usage
from poolparty.queues.sge import SgeQueue, parse_qacct_usage
from poolparty.queues.slurm import SlurmQueue, parse_sacct_usage, sacct_argv
from poolparty.resources import Resources
from poolparty.store.usage import WorkerUsage, read_batch_usage

MIB, GIB = 1024**2, 1024**3

# `sacct --parsable2 --noheader --noconvert --jobs=6524 --format=SACCT_FIELDS` on this machine's SLURM 22.05.8
# (slurmdbd + mariadb, ci/start-slurm.sh), after a map of 4 chunks with cpus=2, memory='2GB', walltime='1:00:00'
# whose two elements ran every chunk (the other two were cancelled before they started), 2026-12-03.
THIS_MACHINE_SACCT = """\
6524_0|COMPLETED|1|00:00.269|2|2|2048M||60
6524_0.batch|COMPLETED|1|00:00.269|2|2||3375104|
6524_1|COMPLETED|1|00:00.270|2|2|2048M||60
6524_1.batch|COMPLETED|1|00:00.270|2|2||1101824|
6524_[2-3%2]|CANCELLED by 0|0|00:00:00|0|2|2048M||60
"""
# The same machine: a job killed for its memory (cgroup), and a job of SLURM before 21.08, whose ReqMem
# ended in "c" (per CPU) -- sacct(1) of 20.11: "ReqMem ... followed by 'c' or 'n'"; its TotalCPU in D-HH:MM:SS.
OOM_AND_OLD_SACCT = """\
13|OUT_OF_MEMORY|4|00:01.500|4|1|100M||UNLIMITED
13.batch|OUT_OF_MEMORY|4|00:01.500|4|1||104857600|
77_3|COMPLETED|7200|1-01:00:00|28800|4|2000Mc||180
77_3.extern|COMPLETED|7200|00:00:00|28800|4||1000K|
77_3.batch|COMPLETED|7200|1-01:00:00|28800|4||3G|
"""

# `qacct -j pp-39b86eeb64cf` on this machine's SGE 8.1.9 (ci/start-sge.sh), after the same map with cpus=2
# (-pe smp 2), memory='2GB' (h_vmem per slot), walltime='1:00:00', 2026-12-03; fields trimmed to those read.
THIS_MACHINE_QACCT = """\
==============================================================
qname        all.q
jobname      pp-39b86eeb64cf
jobnumber    792
taskid       1
slots        2
failed       0
exit_status  0
ru_wallclock 1s
ru_utime     0.325s
ru_stime     0.072s
ru_maxrss    45.742KB
cpu          0.397s
maxvmem      45.348MB
category     -l h_rt=3600,h_vmem=1024M -pe smp 2
==============================================================
qname        all.q
jobname      pp-39b86eeb64cf
jobnumber    792
taskid       2
slots        2
failed       0
exit_status  0
ru_wallclock 1s
ru_maxrss    45.820KB
cpu          0.486s
maxvmem      0.000B
category     -l h_rt=3600,h_vmem=1024M -pe smp 2
"""

# `qstat -f -F json`'s resources_used of a finished PBS Professional job (Altair, "ASPIRE2A Advanced Job
# Management Training" v1.4, 2025, slide "qstat JSON Format": cput 00:00:00, mem 348kb, ncpus 1, vmem 4316kb,
# walltime 00:00:49); the names and Resource_List written as the PBS Professional Reference Guide's
# "Job Attributes" spells them, one subjob of an array (qstat -t) and the array itself (no usage of its own).
PBS_FINISHED = """{
  "pbs_version":"18.2.0.20180209012644",
  "Jobs":{
    "13[].pbsworks":{"Job_Name":"pp-r1","job_state":"F","array":"True"},
    "13[1].pbsworks":{
      "Job_Name":"pp-r1",
      "resources_used":{"cpupercent":0,"cput":"00:00:00","mem":"348kb","ncpus":1,"vmem":"4316kb","walltime":"00:00:49"},
      "job_state":"X","Exit_status":0,
      "Resource_List":{"mem":"1gb","ncpus":1,"walltime":"01:00:00"}
    },
    "14.pbsworks":{"Job_Name":"someone-else","resources_used":{"cput":"00:10:00","walltime":"00:10:00"},"job_state":"F"}
  }
}"""

# bjobs -o ... -json of a finished job: CPU_USED/RUN_TIME "00:00:01", MAX_MEM "5.2 Gbytes", RUNTIMELIMIT
# "00:10:00", SLOTS "1": RAW_JSON_OUTPUT of LSFJobManagerSpec.groovy in github.com/TheRoddyWMS/BatchEuphoria
# (DKFZ cluster; trimmed, JOB_NAME set to a pool's element name, MEMLIMIT and NALLOC_SLOT in the same units).
LSF_DONE = r"""
{
  "COMMAND":"bjobs",
  "JOBS":1,
  "RECORDS":[
    {"JOBID":"22005","JOBINDEX":"3","JOB_NAME":"pp-r1[3]","STAT":"DONE","EXIT_REASON":"",
     "CPU_USED":"00:00:01","RUN_TIME":"00:00:01","MAX_MEM":"5.2 Gbytes","MEMLIMIT":"8 Gbytes",
     "RUNTIMELIMIT":"00:10:00","NALLOC_SLOT":"1"},
    {"JOBID":"22006","JOB_NAME":"other","STAT":"DONE","RUN_TIME":"65 second(s)"}
  ]
}
"""


# -- units -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, n", [("1076K", 1076 * 1024), ("3375104", 3375104), ("2048M", 2 * GIB),
                                     ("45.348MB", int(45.348 * MIB)), ("348kb", 348 * 1024), ("0.000B", 0),
                                     ("", None), ("n/a", None)])
def test_size_bytes(text, n):
    assert size_bytes(text) == n


@pytest.mark.parametrize("text, seconds", [("00:00.269", 0.269), ("1-01:00:00", 90000), ("00:00:49", 49),
                                           ("3600", 3600), ("0:0:5", 5), ("x", None)])
def test_clock_seconds(text, seconds):
    assert clock_seconds(text) == pytest.approx(seconds) if seconds is not None else clock_seconds(text) is None


# -- each adapter: one accounting argv, and its parser on literal output -------------------------------------
def test_sacct_usage_on_this_machines_output():
    jobs = parse_sacct_usage(THIS_MACHINE_SACCT)
    assert set(jobs) == {"6524_0", "6524_1"}  # the pending range never ran
    assert jobs["6524_0"] == JobUsage("6524_0", "completed", 1.0, 0.269, 2, 3375104, 2 * GIB, 3600.0)
    old = parse_sacct_usage(OOM_AND_OLD_SACCT)
    assert old["13"].state == "out_of_memory" and old["13"].peak_memory == 100 * MIB and old["13"].time_limit is None
    assert old["77_3"].requested_memory == 4 * 2000 * MIB  # per CPU x 4 CPUs
    assert old["77_3"].peak_memory == 3 * GIB and old["77_3"].cpu_time == 90000


def test_qacct_usage_on_this_machines_output():
    jobs = parse_qacct_usage(THIS_MACHINE_QACCT)
    assert jobs["792.1"] == JobUsage("792.1", "completed", 1.0, 0.397, 2, int(45.348 * MIB), 2 * GIB, 3600.0)
    assert jobs["792.2"].peak_memory == int(45.820 * 1024) * 1024  # no maxvmem sample: ru_maxrss, a count of KB


def test_pbs_and_lsf_usage_on_documented_output():
    pbs = parse_qstat_usage(PBS_FINISHED, "pp-r1")
    assert pbs == {"13[1].pbsworks": JobUsage("13[1].pbsworks", "completed", 49.0, 0.0, 1, 348 * 1024, GIB, 3600.0)}
    lsf = parse_bjobs_usage(LSF_DONE, "pp-r1")
    assert lsf == {"22005[3]": JobUsage("22005[3]", "completed", 1.0, 1.0, 1, int(5.2 * GIB), 8 * GIB, 600.0)}


@pytest.mark.parametrize("queue, answer, argv", [
    (SlurmQueue, THIS_MACHINE_SACCT, sacct_argv(["6524", "6530"])),
    (SgeQueue, THIS_MACHINE_QACCT, ["qacct", "-j", "pp-r1"]),
    (PbsQueue, PBS_FINISHED, ["qstat", "-f", "-F", "json", "-x", "-t"]),
    (LsfQueue, LSF_DONE, ["bjobs", "-a", "-json", "-hms", "-o", "jobid jobindex stat exit_reason job_name run_time "
                          "cpu_used max_mem memlimit runtimelimit nalloc_slot", "-J", "pp-r1*"]),
])
def test_one_accounting_call_per_report(queue, answer, argv):
    cli = RecordingCLI(**{argv[0]: answer})
    found = queue.account("pp-r1", ["6524", "6530"], cli)
    assert cli.argvs == [argv] and found.unavailable is None and found.jobs
    assert sacct_argv(["6524", "6530"]) == ["sacct", "--parsable2", "--noheader", "--noconvert", "--jobs=6524,6530",
                                            "--format=JobID,State,ElapsedRaw,TotalCPU,CPUTimeRAW,AllocCPUS,ReqMem,"
                                            "MaxRSS,TimelimitRaw"]


def test_accounting_off_is_said_and_the_local_queue_asks_nothing():
    class Refusing(RecordingCLI):
        def run(self, argv, **kw):
            super().run(argv, **kw)
            # sacct without slurmdbd (/work/shared/research: "Slurm accounting storage is disabled", rc 1)
            return type("P", (), {"stdout": "", "returncode": 1,
                                  "stderr": "sacct: error: Slurm accounting storage is disabled\n"})()

    cli = Refusing()
    found = SlurmQueue.account("pp-r1", ["7"], cli)
    assert len(cli.argvs) == 1 and found.jobs == {}
    assert found.unavailable == "sacct: error: Slurm accounting storage is disabled"
    cli = Refusing()
    assert SgeQueue.account("pp-r1", ["7"], cli).unavailable == "sacct: error: Slurm accounting storage is disabled"
    lagging = RecordingCLI(qacct="")  # qacct's "job name pp-r1 not found" (rc 1): nothing accounted yet
    lagging.run = lambda argv, **kw: type("P", (), {"stdout": "", "returncode": 1,  # type: ignore[method-assign]
                                                    "stderr": "error: job name pp-r1 not found\n"})()
    assert SgeQueue.account("pp-r1", [], lagging).unavailable is None
    assert LocalQueue.account("pp-r1", ["L1"], RecordingCLI()) == Accounting({}, "worker")


# -- the pure arithmetic and the wording ------------------------------------------------------------------
def asked(n: int, **res) -> dict[str, Resources]:
    return {f"9_{i}": Resources(**res) for i in range(n)}


def test_report_arithmetic_and_suggestion_on_literal_input():
    jobs = {f"9_{i}": JobUsage(f"9_{i}", "completed", 600.0, 300.0, 4, (1 + i) * 400 * MIB, 8 * GIB, 7200.0)
            for i in range(3)}
    report = build(asked(3, cpus=4, memory=8 * GIB, walltime=7200), Accounting(jobs, "sacct"), {}, [], 3, 0)
    assert report.core_seconds == 3 * 4 * 600 and report.cpu_seconds == 900
    assert report.peak_memory == 1200 * MIB and report.requested_memory == 8 * GIB
    assert report.longest == 600 and report.time_limit == 7200
    assert report.suggestion == ("memory='1.5GB' would have covered every chunk (peak 1.2 GiB); you asked for 8GB; "
                                 "walltime='0:15:00' would have covered every job (longest 0:10:00); you asked for "
                                 "2:00:00; cpus=1 would have been enough (at most 0.5 cores busy); you asked for 4")
    assert report.lines() == [
        "efficiency of 3 job(s) (accounting: sacct)",
        "  CPU: 900.0 of 7200.0 core-seconds allocated used (12%); cpus asked 4",
        "  memory: peak 1.2 GiB of 8.0 GiB per job (15%)",
        "  walltime: longest job 0:10:00 of 2:00:00 (8%)",
        "  resubmitted: 0 of 3 job(s)",
        f"  suggestion: {report.suggestion}"]
    assert report.summary()[:2] == ["CPU 12% of 7200 core-s", "peak 1.2 GiB of 8.0 GiB"]


def test_no_smaller_request_is_suggested_after_a_job_ran_out_of_it():
    jobs = {"9_0": JobUsage("9_0", "completed", 60.0, 59.0, 1, 150 * MIB, 200 * MIB, 3600.0),
            "9_1": JobUsage("9_1", "completed", 3500.0, 3400.0, 1, 50 * MIB, 400 * MIB, 3600.0)}
    report = build(asked(2, memory=400 * MIB, walltime=3600), Accounting(jobs, "sacct"), {},
                   ["out of memory"], 3, 1)
    assert report.suggestions == [] and report.suggestion == "the requests fit what the jobs used"
    assert report.lines()[4] == "  resubmitted: 1 of 3 job(s) (1 out of memory)"
    nothing = build(asked(1), Accounting({}, "sacct"), {}, [], 1, 0)
    assert nothing.suggestion == "no job ran long enough to be measured"


def test_the_workers_measure_stands_in_where_accounting_has_nothing():
    measured = {"9_0": WorkerUsage(2.5, 300 * MIB, 4.0), "9_1": WorkerUsage(1.0, 90 * MIB, 2.0)}
    off = Accounting({}, "sacct", "sacct: error: Slurm accounting storage is disabled")
    report = build(asked(2, cpus=2, memory=GIB), off, measured, [], 2, 0)
    assert report.from_workers == 2 and report.core_seconds == 2 * (4.0 + 2.0) and report.cpu_seconds == 3.5
    assert report.lines()[0] == ("efficiency of 2 job(s) (sacct unavailable (sacct: error: Slurm accounting storage "
                                 "is disabled): measured by the workers themselves)")
    # accounting that sampled memory too seldom (sacct's MaxRSS of a 1 s job): the worker's peak wins
    sampled = Accounting({"9_0": JobUsage("9_0", "completed", 4.0, 2.5, 2, 3 * MIB, GIB, None)}, "sacct")
    mixed = build(asked(2, cpus=2, memory=GIB), sampled, measured, [], 2, 0)
    assert mixed.peak_memory == 300 * MIB and mixed.from_workers == 1
    assert "1 job(s) not in it yet, measured by their workers" in mixed.lines()[0]
    # an accounting that records no CPU or run time (a job killed before its usage was written): the worker's
    silent = Accounting({"9_1": JobUsage("9_1", "completed", 0.0, 0.0, 2, None, GIB, None)}, "qacct")
    filled = build(asked(2, cpus=2, memory=GIB), silent, measured, [], 2, 0)
    assert [(j.elapsed, j.cpu_time, j.peak_memory) for j in filled.jobs] == [(4.0, 2.5, 300 * MIB),
                                                                             (2.0, 1.0, 90 * MIB)]


@pytest.mark.parametrize("n, text", [(1.2 * 1200 * MIB, "1.5GB"), (1.2 * 3.2 * GIB, "3.9GB"), (130 * MIB, "130MB"),
                                     (55.2 * MIB, "56MB"), (10, "1MB")])
def test_suggested_sizes_are_what_people_write(n, text):
    assert memory_text(round_memory(n)) == text


def test_progress_summary_line_fits_the_width():
    parts = ["CPU 12% of 7200 core-s", "peak 1.2 GiB of 8.0 GiB", "memory='1.5GB' would have covered every chunk"]
    assert summary_line(200, parts) == "efficiency: " + " | ".join(parts)
    assert summary_line(64, parts) == "efficiency: CPU 12% of 7200 core-s | peak 1.2 GiB of 8.0 GiB"
    assert summary_line(60, parts) == "efficiency: CPU 12% of 7200 core-s"
    assert summary_line(20, parts) == "efficiency: CPU 12%"
    assert all(len(summary_line(w, parts)) < w for w in (20, 60, 64, 200))


# -- the local queue: the workers measure themselves ---------------------------------------------------------
def busy(x: int) -> int:
    block = bytearray(40 * MIB)
    block[::4096] = b"x" * len(block[::4096])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    return x


def slow(x: int) -> int:
    time.sleep(1)
    return x


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_report_on_a_finished_local_map(tmp_path, caplog):
    wd = tmp_path / "wd"
    with caplog.at_level(logging.INFO, logger="poolparty"):
        with poolparty.Pool(2, queue="local", work_dir=wd, keep_work_dir=True, memory="2GB", cpus=2,
                            walltime="1:00:00", verbose=True) as pool:
            assert pool.map(busy, range(4), chunksize=1) == [0, 1, 2, 3]
    at_end = [r.getMessage() for r in caplog.records if "efficiency of" in r.getMessage()]
    assert len(at_end) == 1 and "measured by the workers themselves" in at_end[0]  # verbose: printed at map end
    result = cli("report", wd)
    assert result.exit_code == 0, result.output
    assert "queue local, 1 batch(es)" in result.output and "suggestion: memory='" in result.output
    out = json.loads(cli("report", "--json", wd).output)
    assert set(out) == {"run", "queue", "job_name", "batches", "not_private", "source", "accounting_unavailable",
                        "jobs", "jobs_measured_by_worker", "core_seconds", "cpu_seconds", "cpu_efficiency",
                        "peak_memory", "requested_memory", "longest_job_seconds", "time_limit_seconds", "asked",
                        "attempts", "resubmissions", "resubmission_reasons", "suggestion", "per_job"}
    assert out["source"] == "worker" and out["queue"] == "local" and out["batches"] == 1
    assert 1 <= out["jobs"] == out["jobs_measured_by_worker"] <= 4 and out["attempts"] == 4
    assert 4 * 0.3 * 0.9 <= out["cpu_seconds"] <= out["core_seconds"]  # used <= allocated (2 cores per job)
    assert 40 * MIB < out["peak_memory"] < 2 * GIB == out["requested_memory"]
    assert out["asked"] == {"cpus": 2, "memory": 2 * GIB, "walltime": 3600}
    assert set(out["per_job"][0]) == {"element", "state", "elapsed", "cpu_time", "cpus", "peak_memory",
                                      "requested_memory", "time_limit"}


def test_a_pool_that_is_not_verbose_makes_no_accounting_call_after_another_was(tmp_path, caplog):
    """verbose=True raises the process-wide logger; a later quiet pool still asks nothing at its map's end."""
    with poolparty.Pool(1, queue="local", work_root=tmp_path, verbose=True) as pool:
        pool.map(busy, range(1))
    assert [r for r in caplog.records if "efficiency of" in r.getMessage()]  # the verbose pool's own report
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="poolparty"):
        with poolparty.Pool(1, queue="local", work_root=tmp_path) as pool:
            assert pool.map(busy, range(2)) == [0, 1]
    assert not [r for r in caplog.records if "efficiency of" in r.getMessage()]


def test_only_a_map_is_reported_at_its_end(tmp_path, caplog):
    """Executor.map is a map; each group of submit() calls (and a workflow's jobs) is not: no accounting
    call per small batch, `poolparty report` covers them."""
    with caplog.at_level(logging.INFO, logger="poolparty"):
        with poolparty.Executor(2, queue="local", work_root=tmp_path, verbose=True) as ex:
            assert ex.submit(busy, 7).result() == 7
            assert not [r for r in caplog.records if "efficiency of" in r.getMessage()]
            assert list(ex.map(busy, range(3))) == [0, 1, 2]
    assert len([r for r in caplog.records if "efficiency of" in r.getMessage()]) == 1


def test_report_refuses_what_is_not_a_run_and_a_run_without_batches(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code != 0 and "is not a poolparty work_dir" in result.output
    wd = tmp_path / "wd"
    with poolparty.Pool(1, queue="local", work_dir=wd, keep_work_dir=True):
        pass  # a pool that mapped nothing
    result = CliRunner().invoke(main, ["report", str(wd)])
    assert result.exit_code != 0 and "no batch in" in result.output and "keep_work_dir=True" in result.output


def test_a_resubmission_and_its_reason_are_in_the_report(tmp_path, make_queue_under_test):
    """A job killed for memory on the fake SLURM: resubmitted, and the report says why (the journal)."""
    q = make_queue_under_test("fake-slurm")
    wd = tmp_path / "wd"
    q.cluster.add_rule("oom", index=0, after=0.2)
    with poolparty.Pool(1, work_dir=wd, keep_work_dir=True, memory="100MB", **q.pool_options()) as pool:
        assert pool.map(slow, [5]) == [5]
    out = json.loads(cli("report", "--json", wd).output)
    assert out["resubmissions"] == 1 and out["resubmission_reasons"] == {"out of memory": 1}
    assert "out of memory" not in out["suggestion"] and not out["suggestion"].startswith("memory=")


ACCOUNTING_COMMAND = {"fake-slurm": "sacct", "fake-sge": "qacct", "fake-pbs": "qstat", "fake-lsf": "bjobs"}


@pytest.mark.parametrize("kind", list(ACCOUNTING_COMMAND))
def test_report_on_the_fake_schedulers(kind, tmp_path, make_queue_under_test):
    """Whatever a scheduler's accounting knows (the fakes know little of it), the report makes one call
    and its numbers hold: the workers' own measure fills in."""
    q = make_queue_under_test(kind)
    wd = tmp_path / "wd"
    with poolparty.Pool(2, work_dir=wd, keep_work_dir=True, memory="1GB", **q.pool_options()) as pool:
        assert pool.map(busy, range(3), chunksize=1) == [0, 1, 2]
    cmd = ACCOUNTING_COMMAND[kind]
    before = len(q.calls(cmd))
    out = json.loads(cli("report", "--json", wd).output)
    assert len(q.calls(cmd)) == before + 1, q.calls(cmd)[before:]
    assert out["jobs"] >= 1 and 0 < out["cpu_seconds"] <= out["core_seconds"] and out["peak_memory"] > 40 * MIB
    assert out["source"] == cmd and out["requested_memory"] == GIB


PROGRESS_DRIVER = '''
import sys, poolparty
from test_efficiency import busy
if __name__ == "__main__":
    with poolparty.Pool(2, queue="local", work_dir=sys.argv[1], progress=True, memory="1GB") as pool:
        print("RESULT", sum(pool.map(busy, range(6), chunksize=1)))
'''


def test_the_progress_display_ends_with_the_reports_summary(tmp_path):
    (tmp_path / "drive.py").write_text(PROGRESS_DRIVER)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(tmp_path / "drive.py"), str(tmp_path / "wd")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "RESULT 15" in proc.stdout, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-2:]
    assert "6/6 tasks" in last[0], proc.stderr
    assert last[1].startswith("efficiency: CPU ") and "peak " in last[1] and "memory='" in last[1], proc.stderr


# -- real schedulers: one accounting call per report, its numbers checked against the scheduler's own ---------
def accounting_calls(q, cmd: str) -> list[list[str]]:
    return [c["argv"] for c in q.calls(cmd)]


@pytest.mark.slurm
def test_report_of_a_real_slurm_map_matches_sacct(tmp_path, make_queue_under_test):
    q = make_queue_under_test("slurm")
    wd = tmp_path / "wd"
    with poolparty.Pool(2, work_dir=wd, keep_work_dir=True, memory="1GB", cpus=1, walltime="0:10:00",
                        verbose=True, **q.pool_options()) as pool:
        assert pool.map(busy, range(4), chunksize=1) == [0, 1, 2, 3]
    assert len(accounting_calls(q, "sacct")) == 1  # the report at the map's end: one call for the pool
    job_ids = [a.split("=", 1)[1] for a in accounting_calls(q, "sacct")[0] if a.startswith("--jobs=")][0]
    rows: dict[str, list[str]] = {}

    def accounted() -> bool:  # the test's own sacct, past the call-counting shim; slurmdbd may lag a moment
        out = subprocess.run([probe("sacct"), "-P", "-n", "--noconvert", f"-j{job_ids}", "-o",
                              "JobID,State,ElapsedRaw,TotalCPU,CPUTimeRAW,AllocCPUS,ReqMem,MaxRSS"],
                             capture_output=True, text=True, timeout=60).stdout
        rows.clear()
        rows.update({r.split("|")[0]: r.split("|") for r in out.splitlines() if r.strip()})
        ended = {e for e, r in rows.items() if r[1] == "COMPLETED" or r[1].startswith("CANCELLED")}
        return ran_here <= ended  # the array's tasks may show up a moment after the array itself

    batch = wd / "batches" / "0001"
    ran_here = set(read_batch_usage(batch / "journal.rec", batch / "usage.rec").measured)

    wait_until(accounted, 60, "sacct to account every job as ended", interval=1)
    before = len(accounting_calls(q, "sacct"))
    out = json.loads(cli("report", "--json", wd).output)
    assert len(accounting_calls(q, "sacct")) == before + 1  # one accounting call per report
    ran = {e: r for e, r in rows.items() if "." not in e and "[" not in e and (int(r[2]) or clock_seconds(r[3]))}
    assert out["source"] == "sacct" and out["accounting_unavailable"] is None
    assert {j["element"] for j in out["per_job"]} == set(ran), (out, rows)
    assert out["core_seconds"] == sum(int(r[4]) for r in ran.values())  # CPUTimeRAW: elapsed x allocated cores
    assert out["cpu_seconds"] == pytest.approx(sum(clock_seconds(r[3]) for r in ran.values()), abs=0.01)
    assert 0 < out["cpu_seconds"] <= out["core_seconds"]
    peaks = [int(r[7]) for e, r in rows.items() if e.split(".")[0] in ran and r[7]]
    assert out["peak_memory"] >= max(peaks, default=0) and out["peak_memory"] > 40 * MIB  # sacct samples: >=
    assert out["requested_memory"] == GIB and out["time_limit_seconds"] == 600
    print(cli("report", wd).output)  # a sample report, and sacct's own rows, for the record
    print("\n".join("|".join(r) for r in rows.values()))


@pytest.mark.sge
def test_report_of_a_real_sge_map_matches_qacct(tmp_path, make_queue_under_test):
    q = make_queue_under_test("sge")
    wd = tmp_path / "wd"
    with poolparty.Pool(2, work_dir=wd, keep_work_dir=True, memory="1GB", walltime="0:10:00",
                        **q.pool_options()) as pool:
        assert pool.map(busy, range(4), chunksize=1) == [0, 1, 2, 3]
        name = pool._engine.name
    ran = set(read_batch_usage(wd / "batches" / "0001" / "journal.rec", wd / "batches" / "0001" / "usage.rec").measured)
    ours: dict[str, JobUsage] = {}

    def accounted() -> bool:  # qacct lags up to its flush_time (15 s); the test's own qacct, past the shim
        text = subprocess.run([probe("qacct"), "-j", name], capture_output=True, text=True, timeout=60).stdout
        ours.update(parse_qacct_usage(text))
        return ran <= set(ours)

    wait_until(accounted, 90, "qacct to account every job that ran")
    before = len(accounting_calls(q, "qacct"))  # the status query's own qacct calls came before
    out = json.loads(cli("report", "--json", wd).output)
    assert len(accounting_calls(q, "qacct")) == before + 1 and accounting_calls(q, "qacct")[-1] == ["-j", name]
    assert out["source"] == "qacct" and out["jobs_measured_by_worker"] == 0
    # a job qacct saw run, or whose worker ran a chunk (qacct may write 0s and no CPU for a short one)
    assert {j["element"] for j in out["per_job"]} == {e for e, j in ours.items() if j.elapsed or j.cpu_time} | ran
    for job in out["per_job"]:  # qacct's own figures wherever it has them
        acct = ours[job["element"]]
        assert job["cpu_time"] == pytest.approx(acct.cpu_time or job["cpu_time"])
        assert job["elapsed"] == pytest.approx(acct.elapsed or job["elapsed"]) and job["cpus"] == acct.cpus
    assert out["cpu_seconds"] >= sum(j.cpu_time for j in ours.values()) - 1e-6
    assert out["requested_memory"] == GIB and out["time_limit_seconds"] == 600
    assert 0 < out["cpu_seconds"] and out["peak_memory"] > 40 * MIB
