"""A user's script: ``python main.py FLAVOR TIMING_JSON WORK_DIR (modules|tracebacks)``; prints one line
``RESULT {json}``. The modules run: a task run through the driver's import path (an ``import`` inside
the task), then, with this directory renamed away so that no node can import from it, tasks that reach
a sibling module and a chain of two modules by value."""
import json
import os
import sys
import traceback

import poolparty
from poolparty.queues import make_queue
from poolparty.queues.cli import SchedulerCLI

import sim
from a import make_thing, run_chain
from frag import fragile


def via_sibling(x):
    return sim.simulate(x)


def via_chain(x):
    return run_chain(x)


def lazily(x):
    import a  # runs on the node: found through the driver's import path
    return a.run_chain(x)


def own_fragile(x):
    raise KeyError(f"own got {x}")  # the script's raising line


def formatted(call):
    try:
        call()
    except Exception as e:
        return {"type": type(e).__name__, "cause": type(e.__cause__).__name__,
                "text": "".join(traceback.format_exception(e))}
    return {"type": None}


def attempt(call):
    """The value, or the error as text: each step's outcome is reported, a failing one does not hide the rest."""
    try:
        return call()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def modules(opts):
    out = {}
    with poolparty.Pool(2, **opts()) as pool:
        out["lazy"] = attempt(lambda: pool.map(lazily, [1, 2]))
        here = os.path.dirname(os.path.abspath(__file__))
        os.rename(here, here + ".hidden")  # from now on only what travels by value can run
        out["sibling"] = attempt(lambda: pool.map(via_sibling, [1, 2, 3]))
        out["chain"] = attempt(lambda: pool.map(via_chain, [1, 2, 3]))
        out["chain_apply"] = attempt(lambda: pool.apply(run_chain, (4,)))
        thing = attempt(lambda: pool.apply(make_thing, (5,)))
        import b
        out["thing"] = [type(thing).__name__, getattr(thing, "v", thing), isinstance(thing, b.Thing)]
    with poolparty.Executor(2, **opts()) as ex:
        out["submit"] = [attempt(lambda: ex.submit(via_chain, 6).result()),
                         attempt(lambda: ex.submit(via_sibling, 7).result())]
    return out


def tracebacks(opts):
    with poolparty.Pool(2, **opts()) as pool:
        out = {"map_sibling": formatted(lambda: pool.map(fragile, [0, 1])),
               "map_script": formatted(lambda: pool.map(own_fragile, [2]))}
    with poolparty.Executor(2, **opts()) as ex:
        out["submit_sibling"] = formatted(lambda: ex.submit(fragile, 3).result())
        out["submit_script"] = formatted(lambda: ex.submit(own_fragile, 4).result())
    return out


def main():
    flavor, timing, work_dir, what = sys.argv[1:5]

    def opts():  # a fresh queue adapter per pool
        queue = make_queue(flavor, SchedulerCLI(timeout=30, backoff_base=0.2))
        for name, value in json.loads(timing).items():
            setattr(queue, name, value)
        return dict(queue=queue, work_root=work_dir, polling_interval=1.0)

    out = modules(opts) if what == "modules" else tracebacks(opts)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
