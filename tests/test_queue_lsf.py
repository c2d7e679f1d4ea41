"""The LSF adapter without a scheduler: the bsub argv it renders and how it reads bsub and
``bjobs -json -o ...`` output. Every sample below is quoted from a public source, named above it."""
import json
import shlex
from pathlib import Path

import pytest
from recording_cli import RecordingCLI

from poolparty import Resources, SubmissionError, UnsupportedResourceError
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.base import ArrayRequest
from poolparty.queues.lsf import (BJOBS_FIELDS, LsfQueue, base_name, bsub_argv, parse_bjobs, parse_bsub,
                                  parse_max_array_size, resource_flags, translate_state)
from poolparty.queues.states import JobState

WORKER = ("/usr/bin/python3", "-m", "poolparty.node.worker", "/runs/r1/batches/0001", "--sub", "3")

# -- literal outputs ----------------------------------------------------------------------------------
# A finished job (STAT DONE, empty EXIT_CODE, "/" written "\/", FINISH_TIME with its " L" suffix):
# RAW_JSON_OUTPUT of src/test/groovy/de/dkfz/roddy/execution/jobs/cluster/lsf/LSFJobManagerSpec.groovy in
# github.com/TheRoddyWMS/BatchEuphoria (DKFZ cluster; some fields left out).
DKFZ_DONE = r"""
{
  "COMMAND":"bjobs",
  "JOBS":1,
  "RECORDS":[
    {
      "JOBID":"22005",
      "JOB_NAME":"ls -l",
      "STAT":"DONE",
      "USER":"otptest",
      "QUEUE":"short-dmg",
      "EXIT_CODE":"",
      "FROM_HOST":"tbi-cn013",
      "EXEC_HOST":"tbi-cn019:tbi-cn019",
      "FINISH_TIME":"Dec 28 19:56 L",
      "SUB_CWD":"$HOME",
      "PEND_REASON":"",
      "EXEC_CWD":"\/home\/otptest",
      "EFFECTIVE_RESREQ":"select[type == local] order[r15s:pg] ",
      "COMMAND":"ls -l",
      "DEPENDENCY":"done(22004)"
    }
  ]
}
"""

# A job held while pending (PSUSP) on OLCF Ascent: `bjobs -o '...' 58652 -json` in the docstring of
# LSFJob.retrieve_jobdata, buildtest/scheduler/lsf.py of github.com/buildtesters/buildtest (no JOBID
# field was asked for: such a record names no job and is skipped).
OLCF_PSUSP = """{
  "COMMAND":"bjobs",
  "JOBS":1,
  "RECORDS":[
    {
      "JOB_NAME":"hold_job",
      "STAT":"PSUSP",
      "USER":"shahzebsiddiqui",
      "QUEUE":"batch",
      "EXIT_CODE":"",
      "SUBMIT_TIME":"May 28 12:45",
      "OUTPUT_FILE":"hold_job.out",
      "ERROR_FILE":"hold_job.err"
    }
  ]
}"""

# A job killed by its owner (EXIT + "TERM_OWNER: job killed by owner"), preceded on stdout by the lines
# an LSF client prints while it waits for mbatchd: the TestLSFClient setUp of github.com/mskcc/ridgeback
# (batch_systems/lsf_client tests).
MSKCC_KILLED = """Cannot connect to LSF. Please wait ...
        Cannot connect to LSF. Please wait ...
        Cannot connect to LSF. Please wait ...

        {
          "COMMAND":"bjobs",
          "JOBS":1,
          "RECORDS":[
            {
              "USER":"nikhil",
              "EXIT_CODE":"",
              "STAT":"EXIT",
              "EXIT_REASON":"TERM_OWNER: job killed by owner",
              "PEND_REASON":""
            }
          ]
        }
        """

# bsub's answer on ETH's Brutus cluster, quoted in gc3libs/backends/lsf.py of github.com/gc3pie/gc3pie
BRUTUS_BSUB = "Generic job.\nJob <473713> is submitted to queue <pub.1h>.\n"

# the termination texts LSF writes: "TERM_RUNLIMIT: job killed after reaching LSF run time limit."
# (DTU's cluster, job report in outputs/test_4/Markdown/test_4_1.md of
# github.com/FredslundMagnus/DeepLearningProject); "TERM_MEMLIMIT: job killed after reaching LSF memory
# usage limit" (IBM Support, "What does the default_limit mean in MEMLIMIT?", isg3T1018915)
RUNLIMIT = "TERM_RUNLIMIT: job killed after reaching LSF run time limit."
MEMLIMIT = "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit"

# every STAT word of "LSF terms and concepts: Job states" (IBM Spectrum LSF 10.1), plus PROV and
# ZOMBI of the bjobs reference
ALL_STATS = {"PEND": JobState.PENDING, "PROV": JobState.PENDING, "WAIT": JobState.PENDING,
             "PSUSP": JobState.HELD, "RUN": JobState.RUNNING, "UNKWN": JobState.RUNNING,
             "USUSP": JobState.SUSPENDED, "SSUSP": JobState.SUSPENDED, "DONE": JobState.COMPLETED,
             "POST_DONE": JobState.COMPLETED, "POST_ERR": JobState.COMPLETED, "EXIT": JobState.FAILED,
             "ZOMBI": JobState.NODE_FAIL}


def request(indices=(1, 2, 3), offset=9, throttle=2, resources=Resources()) -> ArrayRequest:
    return ArrayRequest(name="pp-r1", part=ArrayPart(offset, tuple(indices)), throttle=throttle,
                        resources=resources, script=Path("/runs/r1/job.sh"), worker_argv=WORKER,
                        workdir=Path("/home/u/project"), log_dir=Path("/runs/r1/logs"))


def record(job_id, index, stat, name, reason="", code=""):
    return {"JOBID": job_id, "JOBINDEX": index, "STAT": stat, "EXIT_CODE": code, "EXIT_REASON": reason,
            "JOB_NAME": name}


# -- parsing ------------------------------------------------------------------------------------------
def test_a_finished_plain_job_with_escaped_slashes():
    states = parse_bjobs(DKFZ_DONE, "ls -l")
    assert {k: v.state for k, v in states.items()} == {"22005": JobState.COMPLETED}


def test_a_record_without_jobid_is_skipped():
    assert parse_bjobs(OLCF_PSUSP, "hold_job") == {}
    assert translate_state("PSUSP") is JobState.HELD


def test_lines_before_the_json_and_a_killed_job():
    doc = json.loads(MSKCC_KILLED[MSKCC_KILLED.index("{"):])
    doc["RECORDS"][0].update(JOBID="7", JOB_NAME="pp")
    text = MSKCC_KILLED[:MSKCC_KILLED.index("{")] + json.dumps(doc, indent=2)
    assert parse_bjobs(text, "pp")["7"].state is JobState.CANCELLED
    assert parse_bjobs(MSKCC_KILLED, "pp") == {}  # the sample's own record names no job


def test_array_elements_are_job_index_and_named_name_index():
    # bjobs reference, -o fields jobid/jobindex: an element reports its array's JOBID and its own JOBINDEX,
    # JOB_NAME "name[index]"; a plain job JOBINDEX 0 (composed from the documented fields)
    doc = {"COMMAND": "bjobs", "JOBS": 3, "RECORDS": [
        record("123", "4", "EXIT", "pp[4]", RUNLIMIT, "140"), record("123", "5", "RUN", "pp[5]"),
        record("124", "0", "EXIT", "pp", MEMLIMIT, "130"), record("125", "1", "RUN", "pp-other[1]")]}
    states = parse_bjobs(json.dumps(doc), "pp")
    assert {k: v.state for k, v in states.items()} == {"123[4]": JobState.TIMEOUT, "123[5]": JobState.RUNNING,
                                                      "124": JobState.OUT_OF_MEMORY}
    assert states["123[4]"].reason == f"EXIT {RUNLIMIT}"


def test_no_job_found():
    assert parse_bjobs("", "pp") == {}
    assert parse_bjobs("No job found\n", "pp") == {}
    assert parse_bjobs('{"COMMAND":"bjobs","JOBS":0,"RECORDS":[]}', "pp") == {}


@pytest.mark.parametrize("stat", sorted(ALL_STATS))
def test_every_stat_word(stat):
    assert translate_state(stat) is ALL_STATS[stat]


@pytest.mark.parametrize("reason, state", [
    # "Termination reasons displayed by bacct, bhist, and bjobs" (IBM Spectrum LSF 10.1)
    (RUNLIMIT, JobState.TIMEOUT), ("TERM_DEADLINE: job killed after deadline expires", JobState.TIMEOUT),
    ("TERM_CPULIMIT: job killed after reaching LSF CPU usage limit", JobState.TIMEOUT),
    (MEMLIMIT, JobState.OUT_OF_MEMORY), ("TERM_SWAP: job killed after reaching LSF swap usage limit", JobState.OUT_OF_MEMORY),
    ("TERM_OWNER: job killed by owner", JobState.CANCELLED), ("TERM_ADMIN: job killed by root or LSF administrator",
                                                              JobState.CANCELLED),
    ("TERM_FORCE_OWNER: job killed by owner without time for cleanup", JobState.CANCELLED),
    ("TERM_REQUEUE_ADMIN: job killed and requeued by root or LSF administrator", JobState.REQUEUED),
    ("TERM_PREEMPT: job killed after preemption", JobState.PREEMPTED),
    ("TERM_ZOMBIE: job exited while LSF is not available", JobState.NODE_FAIL),
    ("TERM_REMOVE_HUNG_JOB: job removed from LSF system", JobState.NODE_FAIL),
    ("TERM_CWD_NOTEXIST: current working directory is not accessible or does not exist on the execution host",
     JobState.LAUNCH_FAILED),
    ("", JobState.FAILED), ("TERM_SOMETHING_NEW: later LSF", JobState.FAILED),
])
def test_exit_reasons(reason, state):
    assert translate_state("EXIT", reason) is state


def test_parse_bsub():
    assert parse_bsub(BRUTUS_BSUB, ["bsub"]) == "473713"
    assert parse_bsub("Job <12> is submitted to default queue <normal>.\n", ["bsub"]) == "12"
    with pytest.raises(SubmissionError, match="unexpected bsub output"):
        parse_bsub("Bad resource requirement syntax. Job not submitted.\n", ["bsub"])


def test_max_job_array_size():
    assert parse_max_array_size("System default queue for batch jobs:  normal\n\tMAX_JOB_ARRAY_SIZE = 20000\n") == 20000
    assert parse_max_array_size("") == 1000


def test_base_name():
    assert base_name("pp[3]") == "pp" and base_name("pp[1-8]%2") == "pp" and base_name("ls -l") == "ls -l"


# -- argv rendering -----------------------------------------------------------------------------------
def test_array_argv_quotes_every_command_word():
    argv = bsub_argv(request((1, 2, 3, 5), throttle=2))
    assert argv[:8] == ["bsub", "-cwd", "/home/u/project", "-o", "/runs/r1/logs/j%J_%I.log", "-R", "span[hosts=1]",
                        "-J"]
    assert argv[8] == "pp-r1[1-3,5]%2"
    # LSF hands the command line to /bin/sh: joined back, the shell gives the script exactly our words
    assert shlex.split(" ".join(argv[9:])) == ["/runs/r1/job.sh", *WORKER, "--offset", "9", "--index-env",
                                               "LSB_JOBINDEX"]


def test_a_word_with_spaces_and_quotes_survives_the_shell():
    r = request()
    odd = ArrayRequest(**{**r.__dict__, "worker_argv": ("/opt/my python/bin/python3", "-c", "it's $HOME")})
    argv = bsub_argv(odd, chunk=4)
    assert shlex.split(" ".join(argv[argv.index("pp-r1") + 1:])) == [
        "/runs/r1/job.sh", "/opt/my python/bin/python3", "-c", "it's $HOME", "--chunk", "4"]


def test_resources():
    r = Resources(cpus=4, memory=3 * 1024**3, walltime=3601, partition="long", account="lab", gpus=1)
    assert resource_flags(r) == ["-n", "4", "-M", "3072MB", "-R", "rusage[mem=3072MB] span[hosts=1]", "-W", "61",
                                 "-gpu", "num=1", "-q", "long", "-P", "lab"]
    with pytest.raises(UnsupportedResourceError, match="LSF has no QOS"):
        resource_flags(Resources(qos="high"))


def test_submit_query_and_log_paths():
    cli = RecordingCLI(bsub="Job <88> is submitted to default queue <normal>.\n", bparams="\tMAX_JOB_ARRAY_SIZE = 50\n")
    q = LsfQueue(cli)
    assert q.max_array_index() == 50
    [sub] = q.submit(request((1, 2)))
    assert sub.job_id == "88" and sub.elements == {10: "88[1]", 11: "88[2]"}
    assert q.log_path(Path("/l"), "88[2]") == Path("/l/j88_2.log")
    assert q.log_path(Path("/l"), "88") == Path("/l/j88_0.log")
    cli.argvs.clear()
    q.query("pp-r1")
    assert cli.argvs == [["bjobs", "-a", "-json", "-o", BJOBS_FIELDS, "-J", "pp-r1*"]]
    assert q.set_throttle("88", 5) and cli.argvs[-1] == ["bmod", "-J", "%5", "88"]


def test_workflow_resources_lsf_queue_project_and_raw_flags():
    """Snakemake's lsf_* resources: queue and project stand for the portable fields, lsf_extra adds flags."""
    given = {"lsf_queue": "long", "lsf_project": "lab42", "lsf_extra": "-x"}
    fields, extra = LsfQueue.translate_workflow(given, {}, Resources())
    assert fields == {"partition": "long", "account": "lab42"} and extra == ("-x",)
