"""The main job on the embedded local queue: estimate pi by Monte Carlo, in 200 tasks.

    python examples/quickstart.py                 # local queue (default)
    POOLPARTY_QUEUE=slurm python examples/quickstart.py
"""
import random
import sys

import poolparty


def hits(seed: int, samples: int = 200_000) -> int:
    rng = random.Random(seed)
    return sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def main() -> int:
    tasks = 200
    with poolparty.Pool(max_running=4, verbose=True) as pool:
        counts = pool.map(hits, range(tasks), chunksize=10)
    pi = 4 * sum(counts) / (tasks * 200_000)
    print(f"pi ~= {pi:.5f} from {tasks} tasks")
    return 0 if abs(pi - 3.14159) < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
