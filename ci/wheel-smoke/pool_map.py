"""Wheel smoke 1: a Pool.map on the local queue, from the installed poolparty-hpc wheel."""
import sys

import poolparty


def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    print(f"poolparty {poolparty.__version__} from {poolparty.__file__}")
    with poolparty.Pool(queue="local", max_running=2) as pool:
        got = pool.map(square, range(20), chunksize=5)
    assert got == [x * x for x in range(20)], got
    print("Pool.map on the local queue: ok")
    sys.exit(0)
