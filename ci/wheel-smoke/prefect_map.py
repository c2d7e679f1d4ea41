"""Wheel smoke 3: a Prefect flow with .map through PoolPartyTaskRunner (installed prefect-poolparty wheel)
on the local queue; Prefect runs its own temporary server (ci/wheel-smoke.sh gives it 180 s to start:
the main suite runs beside it)."""
import sys

from prefect import flow, task
from prefect_poolparty import PoolPartyTaskRunner


@task
def square(x: int) -> int:
    return x * x


@flow(task_runner=PoolPartyTaskRunner(queue="local", max_running=2))
def squares(n: int) -> list[int]:
    return [f.result() for f in square.map(range(n))]


if __name__ == "__main__":
    got = squares(10)
    assert got == [x * x for x in range(10)], got
    print("Prefect flow with .map on the local queue: ok")
    sys.exit(0)
