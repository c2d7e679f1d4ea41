"""concurrent.futures style: submit calls, handle them as they complete, one failing on purpose."""
import sys
from concurrent.futures import as_completed

import poolparty


def simulate(n: int) -> float:
    if n == 7:
        raise ValueError("parameter 7 is unstable")
    return sum(i * i for i in range(n * 10_000)) / 1e9


def main() -> int:
    results, errors = {}, {}
    with poolparty.Executor(max_workers=4, memory="1GB", walltime="0:10:00") as ex:
        futures = {ex.submit(simulate, n): n for n in range(12)}
        for fut in as_completed(futures):
            n = futures[fut]
            try:
                results[n] = fut.result()
            except ValueError as e:  # the original exception type comes back
                errors[n] = str(e)
    print(f"{len(results)} results, errors: {errors}")
    return 0 if len(results) == 11 and list(errors) == [7] else 1


if __name__ == "__main__":
    sys.exit(main())
