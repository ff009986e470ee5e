"""Ctrl-C held back while native modules initialise, delivered right after."""

import os
import signal
import sys
import time

import pytest

from nuke_hdmatt.stop_signals import (
    deferred_stop_signals,
    install_stop_handlers,
    restore_handlers,
    stop_signal,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="os.kill(SIGINT) ends the process on Windows")


def test_a_ctrl_c_inside_the_block_lands_after_it():
    previous = install_stop_handlers()
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_stop_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)       # the handler would have run by now
                reached.append("end of block")
        assert reached == ["end of block"] and stop_signal() == signal.SIGINT
        with deferred_stop_signals():   # delivered once: the next block ends quietly
            pass
    finally:
        restore_handlers(previous)


def test_the_command_line_imports_openimageio_with_ctrl_c_held(monkeypatch):
    from contextlib import contextmanager

    from nuke_hdmatt import cli
    entered = []

    @contextmanager
    def spy():
        entered.append(True)
        yield
        entered.append("OpenImageIO" in sys.modules)
    monkeypatch.setattr("nuke_hdmatt.stop_signals.deferred_stop_signals", spy)
    cli._import_native_modules()
    assert entered == [True, True]
