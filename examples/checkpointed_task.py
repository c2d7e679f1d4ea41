"""A task longer than its job's walltime, continued from its checkpoint in the next job.

Run it: ``python examples/checkpointed_task.py`` (the local queue; set POOLPARTY_QUEUE=slurm on a cluster).
Each job is limited to 4 seconds and warned 2 seconds before; the task needs about 8 seconds, so it runs
in three or four jobs, and every step is done once: the output shows which job did which steps.
"""
import os
import time

import poolparty
from poolparty import checkpoint


def integrate(n_steps: int) -> tuple[float, list[str]]:
    step, total, jobs = checkpoint.load(default=(0, 0.0, []))  # (0, 0.0, []) in the first job
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("JOB_ID") or os.environ.get("POOLPARTY_JOB_ID", "?")
    jobs = jobs + [f"job {job} from step {step}"]
    while step < n_steps:
        time.sleep(0.5)  # one step of real work
        total += step * 0.5
        step += 1
        checkpoint.save((step, total, jobs))  # after the walltime warning, the task stops here
    return total, jobs


if __name__ == "__main__":
    with poolparty.Pool(1, walltime=4, walltime_signal_lead=2, max_resubmissions=0) as pool:
        total, jobs = pool.map(integrate, [16])[0]
    print(f"total {total}, computed in {len(jobs)} jobs:")
    for line in jobs:
        print("  " + line)
