"""The driver process's life cycle around its engines. At interpreter exit, work still in flight is
finished when the program ends normally (as ``concurrent.futures`` does) and cancelled when it ends by
an uncaught exception, Ctrl-C or SIGTERM (no orphaned jobs); SIGTERM (scancel of the driver's own job,
kill) becomes SystemExit so that this runs; ``verbose=True`` logs the core's progress to stderr."""
from __future__ import annotations

import atexit
import logging
import signal
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine

log = logging.getLogger("poolparty")

_LIVE_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_WINDOWS: "list[weakref.WeakMethod[Callable[[], None]]]" = []
_sigterm_installed = False
_sigterm_received = False
_interpreter_exiting = False


def watch(engine: "Engine") -> None:
    """Finish or cancel ``engine``'s work if the interpreter exits while it still has work in flight."""
    _LIVE_ENGINES.add(engine)
    install_sigterm_handler()


def forget(engine: "Engine") -> None:
    """``engine`` released its work_dir: nothing left to finish or cancel at exit."""
    _LIVE_ENGINES.discard(engine)


def flush_at_exit(flush: Callable[[], None]) -> None:
    """``flush`` (a bound method of a batching window's owner) submits calls still waiting in a window
    before a normal exit waits for the engines; held weakly, so a pool dropped early is not kept."""
    _WINDOWS[:] = [w for w in _WINDOWS if w() is not None]
    _WINDOWS.append(weakref.WeakMethod(flush))  # type: ignore[arg-type]


def interpreter_exiting() -> bool:
    """The main program has ended: ``concurrent.futures`` refuses new work from here on."""
    return _interpreter_exiting


def _mark_interpreter_exit() -> None:
    global _interpreter_exiting
    _interpreter_exiting = True


# concurrent.futures marks the interpreter's shutdown with this hook, which runs when the main program
# ends, before any atexit handler (one registered earlier than ours included)
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_mark_interpreter_exit)
else:  # pragma: no cover - every CPython since 3.9 has it
    atexit.register(_mark_interpreter_exit)


def exit_failure() -> str | None:
    """Why the program is ending badly (SIGTERM, or the uncaught exception's type), or None when it
    ends normally (the end of the script, or ``sys.exit()``: a SystemExit leaves no ``sys.last_value``)."""
    if _sigterm_received:
        return "SIGTERM"
    if hasattr(sys, "ps1"):  # interactive: an earlier error at the prompt is not how the session ends
        return None
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return None if exc is None else type(exc).__name__


@atexit.register
def _at_exit() -> None:
    _mark_interpreter_exit()
    failure = exit_failure()
    if failure is None:
        for ref in list(_WINDOWS):
            flush = ref()
            if flush is not None:
                try:
                    flush()
                except Exception as e:  # e.g. refused by the scheduler: the futures hold the error
                    log.warning("poolparty: interpreter exit: could not submit waiting calls: %s", e)
    for engine in list(_LIVE_ENGINES):
        if not engine.busy:  # never closed, nothing in flight: release it (a clean work_dir goes)
            engine.close()
            continue
        if failure is not None:
            log.warning("poolparty: interpreter exit by %s with work in flight: cancelling pool %s",
                        failure, engine.name)
            engine.terminate(f"interpreter exit ({failure})")
            continue
        log.warning("poolparty: interpreter exit with work in flight: waiting for pool %s to finish it "
                    "(Ctrl-C cancels it)", engine.name)
        try:
            engine.close()
        except BaseException as e:  # Ctrl-C while waiting: no orphans
            for left in list(_LIVE_ENGINES):
                left.terminate(f"interpreter exit ({type(e).__name__})")
            log.warning("poolparty: interpreter exit interrupted by %s: the work in flight was cancelled",
                        type(e).__name__)
            return


def install_sigterm_handler() -> None:
    """SIGTERM becomes SystemExit so atexit cancels our jobs; only in the main thread, and only when
    nobody installed a handler of their own (Snakemake, Prefect and the user keep theirs)."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        global _sigterm_received
        _sigterm_received = True
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_installed = True


def enable_verbose_logging() -> None:
    """The ``poolparty`` logger at INFO on stderr, with one handler however many pools ask."""
    logger = logging.getLogger("poolparty")
    if not any(getattr(h, "_poolparty", False) for h in logger.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        h._poolparty = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
