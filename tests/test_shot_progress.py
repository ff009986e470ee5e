"""The progress reporter's frame ETA: the count's own rate, not the frame's time so far."""

import io
import json

import pytest

from nuke_hdmatt.shot import progress as progress_module
from nuke_hdmatt.shot.progress import ProgressReporter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", c)
    return c


def _etas(log):
    return [e.get("eta_s") for e in map(json.loads, log.read_text().splitlines())
            if e["event"] == "progress"]


def test_the_eta_follows_the_steps_rate_since_the_first_report(tmp_path, clock):
    log = tmp_path / "log.jsonl"
    rep = ProgressReporter(1, stream=io.StringIO(), json_log=str(log))
    rep.frame_start(1001)
    clock.now += 16.0            # reading, the prior, the first batch: not the steps' rate
    rep.patch(4, 100, "patches")
    clock.now += 2.0
    rep.patch(8, 100, "patches")
    clock.now += 2.0
    rep.patch(12, 100, "patches")
    # the old estimate, the frame's 20 s over 12 of 100 steps, said 147 s
    assert _etas(log) == [None, 46.0, 44.0]
    # a new count (the foreground's tiles after the matte) starts its own rate
    clock.now += 1.0
    rep.patch(1, 10, "foreground")
    clock.now += 1.0
    rep.patch(3, 10, "foreground")
    assert _etas(log)[3:] == [None, 3.5]
    rep.close()


def test_until_the_rate_is_known_the_shot_s_frames_say_how_long(tmp_path, clock):
    log = tmp_path / "log.jsonl"
    stream = io.StringIO()
    rep = ProgressReporter(3, stream=stream, json_log=str(log))
    for frame, seconds in ((1001, 30.0), (1002, 20.0)):
        rep.frame_start(frame)
        clock.now += seconds
        rep.frame_done(frame, output="a.exr", cached=False)
    rep.frame_start(1003)
    clock.now += 10.0
    rep.patch(5, 50, "patches")
    assert _etas(log)[-1] == 15.0           # the frames' mean, 25 s, less 10 s run
    assert "frame ETA 15s" in stream.getvalue()
    rep.close()


def test_a_share_of_the_frame_tells_its_fraction(tmp_path, clock):
    log = tmp_path / "log.jsonl"
    rep = ProgressReporter(1, stream=io.StringIO(), json_log=str(log))
    rep.frame_start(1)
    matte, foreground = rep.share(0.0, 0.85), rep.share(0.85, 1.0)
    matte(10, 20, "patches")
    matte(20, 20, "patches")
    foreground(1, 4, "foreground")
    foreground(4, 4, "foreground")
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.425, 0.85, 0.8875, 1.0]
    assert [e["done"] for e in events if e["event"] == "progress"] == [10, 20, 1, 4]
    rep.close()


def test_a_json_log_that_cannot_be_written_is_one_warning_and_the_run_goes_on():
    # /dev/full opens for appending and fails every write (ENOSPC): a log disk filling up
    stream = io.StringIO()
    rep = ProgressReporter(2, stream=stream, json_log="/dev/full")
    rep.frame_start(1)
    rep.patch(1, 2, "patches")
    rep.warning("something")
    rep.frame_start(2)
    rep.close()
    lines = [line for line in stream.getvalue().splitlines() if "--json-log" in line]
    assert lines == ["hdmatt: warning: --json-log /dev/full: cannot write (No space left on "
                     "device); going on without it"]
