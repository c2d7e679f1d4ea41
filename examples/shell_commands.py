"""Shell commands through the engine (what the Snakemake plugin does): one array for all of them."""
import sys
import tempfile
from pathlib import Path

import poolparty


def main() -> int:
    out = Path(tempfile.mkdtemp())
    engine = poolparty.Engine(poolparty.EngineOptions(queue="local", max_running=2))
    try:
        commands = [poolparty.ShellCommand(["sh", "-c", f"echo sample {i} > {out}/s{i}.txt"]) for i in range(5)]
        handle = engine.submit(None, [[(i, c)] for i, c in enumerate(commands)])
        handle.results(timeout=120)
    finally:
        engine.close()
    written = sorted(p.name for p in out.iterdir())
    print("wrote", written)
    return 0 if len(written) == 5 else 1


if __name__ == "__main__":
    sys.exit(main())
