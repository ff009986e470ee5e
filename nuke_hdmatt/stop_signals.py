"""Ctrl-C and SIGTERM: a clean stop that is remembered (standard library only).

SIGTERM (the farm's kill, ``kill PID``) is handled like Ctrl-C: both raise
KeyboardInterrupt, so ``finally`` blocks remove temp files, and the first one received is
kept, so a stop that surfaces as another error is still reported as a stop
(:func:`nuke_hdmatt.errors.run_reporting`).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "stop_signal", "install_stop_handlers", "restore_handlers",
           "SigintCancel", "deferred_stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_deferring: list[bool] = []     # inside deferred_stop_signals (nested blocks: one entry each)
_held: list[int] = []           # signals that came meanwhile


def stop_signal() -> int | None:
    """The first SIGINT/SIGTERM this process received, or None."""
    return _received[0] if _received else None


def _raise_interrupt(signum, frame):
    _received.append(signum)
    if _deferring:
        _held.append(signum)
        return
    raise KeyboardInterrupt


def install_stop_handlers() -> dict:
    """SIGINT and SIGTERM raise KeyboardInterrupt (so ``finally`` blocks remove temp files)
    and are remembered (so a Ctrl-C that surfaces as another error is still reported as
    one). Main thread only; elsewhere a no-op. Returns the previous handlers."""
    _received.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _raise_interrupt)
    return previous


@contextmanager
def deferred_stop_signals():
    """Hold the KeyboardInterrupt of a SIGINT or SIGTERM back for the enclosed code (with
    :func:`install_stop_handlers`' handlers in place) and raise it when the code ends. For
    native modules' initialisation: OpenImageIO's bindings abort the whole process
    ("Critical nanobind error", SIGABRT) when a Ctrl-C's KeyboardInterrupt is raised while
    they build their enums. (A signal mask would not do: the kernel hands a process's
    signal to any thread that does not block it.)"""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
        if not _deferring and _held:
            _held.clear()
            raise KeyboardInterrupt


def restore_handlers(previous: dict) -> None:
    """Undo :func:`install_stop_handlers` (for callers of ``cli.main`` inside a process)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class SigintCancel:
    """Context manager: first Ctrl-C requests a clean stop, the second interrupts at once.

    Use the instance as the engine's ``cancel`` callback (it returns True once Ctrl-C was
    pressed); ``on_first(signum)`` is told of the first SIGINT or SIGTERM. Outside the main
    thread (e.g. inside Nuke) signals cannot be caught, and the manager does nothing but
    still works as a never-true callback.
    """

    def __init__(self, on_first=None):
        self.requested = False
        self.signum: int | None = None
        self._on_first = on_first
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame):
        _received.append(signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        if self._on_first is not None:
            self._on_first(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False
