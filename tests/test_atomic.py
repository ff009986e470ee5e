"""The shared atomic writer: all or nothing, normal permissions, no temp files left."""

import os
import signal
from pathlib import Path

import pytest

from nuke_hdmatt.atomic import atomic_path, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "job.yaml"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["job.yaml"]


def test_written_files_get_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_an_existing_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "init.py"
    target.write_text("old")
    target.chmod(0o600)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o600


def test_a_symlink_is_written_through_like_open_does(tmp_path):
    # ~/.nuke/init.py kept in a dotfiles folder: the link stays, its target gets the text
    real = tmp_path / "dotfiles" / "init.py"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "init.py"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(os.listdir(real.parent)) == ["init.py"]


def test_a_file_this_process_may_not_write_is_refused_not_replaced(tmp_path, monkeypatch):
    # chmod a-w: a locked frame (faked for os.access: as root every file is writable)
    target = tmp_path / "approved.exr"
    target.write_bytes(b"approved")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == target else real(p, mode))
    with pytest.raises(PermissionError, match="read-only"):
        write_text_atomic(target, "new")
    assert target.read_bytes() == b"approved" and os.listdir(tmp_path) == ["approved.exr"]


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_the_umask_is_read_as_it_is(mask):
    from nuke_hdmatt.atomic import current_umask
    old = os.umask(mask)
    try:
        assert current_umask() == mask and os.umask(mask) == mask    # and left as it was
    finally:
        os.umask(old)


def test_dot_dot_through_a_missing_folder_is_taken_as_every_check_takes_it(tmp_path):
    # the checks of an output's folder read "sub/.." lexically, as mkstemp places the temp
    write_text_atomic(tmp_path / "sub" / ".." / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x" and os.listdir(tmp_path) == ["a.txt"]


def _output(folder):
    with atomic_path(folder / "alpha.exr") as tmp:
        Path(tmp).write_text("never")


def _output_check(folder):
    from nuke_hdmatt.imaging.writing import check_output_location
    check_output_location(str(folder / "alpha.exr"))


def _cache_entry(folder):
    import numpy as np

    from nuke_hdmatt.shot.cache import FrameCache
    FrameCache(folder).put("ab" * 32, np.zeros((4, 4), np.float32))


def _cache_probe(folder):
    from nuke_hdmatt.shot.cache import FrameCache
    FrameCache(folder).usable()


WRITERS = [_output, _output_check, _cache_entry, _cache_probe]


def _files(folder):
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("write", WRITERS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_the_instant_the_temp_file_exists_leaves_none(tmp_path, monkeypatch, signum,
                                                             write):
    """Ctrl-C (or SIGTERM) right after the temp file was made, before the code that removes
    it on failure: it was left in the output folder. Another thread runs meanwhile, as
    torch's do in a real run (a signal mask on the main thread would not hold the stop)."""
    import threading
    import types

    from nuke_hdmatt import atomic
    made = []

    def close_then_stop(fd):
        os.close(fd)
        made.extend(_files(tmp_path))
        os.kill(os.getpid(), signum)  # arrives while the file exists, before it is returned

    def stop(s, frame):
        raise KeyboardInterrupt if s == signal.SIGINT else SystemExit(128 + s)

    monkeypatch.setattr(atomic, "os", types.SimpleNamespace(**{**vars(os), "close": close_then_stop}))
    done = threading.Event()
    other = threading.Thread(target=done.wait, args=(30,), daemon=True)
    other.start()
    old = signal.signal(signum, stop)
    try:
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            write(tmp_path)
    finally:
        signal.signal(signum, old)
        done.set()
    assert made and _files(tmp_path) == []


@pytest.mark.parametrize("write", WRITERS)
def test_a_stop_the_instant_the_temp_files_maker_returns_leaves_none(tmp_path, write):
    """The instant after the temp file's maker returns, before its caller holds the name
    (where CPython runs a pending signal's handler): the caller's cleanup still has it."""
    import sys

    from nuke_hdmatt import atomic
    seen = []

    def on_return(frame, event, arg):
        if event == "return" and arg is not None:
            seen.extend(_files(tmp_path))
            raise KeyboardInterrupt
        return on_return

    def tracer(frame, event, arg):
        return on_return if frame.f_code is atomic.new_temp_file.__code__ else None

    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            write(tmp_path)
    finally:
        sys.settrace(None)
    assert seen and _files(tmp_path) == []
