"""The driver process's life cycle around its engines: engines still busy at interpreter exit cancel
their jobs, SIGTERM (scancel of the driver's own job, kill) becomes SystemExit so that they do, and
``verbose=True`` logs the core's progress to stderr."""
from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolparty.engine.engine import Engine

log = logging.getLogger("poolparty")

_LIVE_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_sigterm_installed = False


def watch(engine: "Engine") -> None:
    """Cancel ``engine``'s jobs if the interpreter exits while it still has work in flight."""
    _LIVE_ENGINES.add(engine)
    install_sigterm_handler()


def forget(engine: "Engine") -> None:
    """``engine`` released its work_dir: nothing left to cancel at exit."""
    _LIVE_ENGINES.discard(engine)


@atexit.register
def _cancel_at_exit() -> None:
    for engine in list(_LIVE_ENGINES):
        if engine.busy:
            log.warning("poolparty: interpreter exit with work in flight: cancelling pool %s", engine.name)
            engine.terminate("interpreter exit")


def install_sigterm_handler() -> None:
    """SIGTERM becomes SystemExit so atexit cancels our jobs; only in the main thread, and only when
    nobody installed a handler of their own (Snakemake, Prefect and the user keep theirs)."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
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
