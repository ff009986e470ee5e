"""Ctrl-C: a clean stop with finished frames kept and no temp files, both for the real
command (SIGINT to a subprocess) and for a cancel raised through the engine's callback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from cli_fixtures import FAST, exr_sequence, hdmatt_env, json_events, read_image, temp_leftovers

FRAMES = 40


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child is POSIX-only")
@pytest.mark.parametrize("signum, code, told", [
    (signal.SIGINT, 130, "stopping after the current patch (Ctrl-C again to abort now)"),
    # the farm's kill comes from no keyboard: no Ctrl-C hint
    (signal.SIGTERM, 143, "terminated; stopping after the current patch\n"),
])
def test_a_stop_signal_mid_shot_keeps_finished_frames_and_leaves_no_temp(tmp_path, signum,
                                                                         code, told):
    plate, trimap = exr_sequence(tmp_path / "in", range(1, FRAMES + 1), size=64)
    log, cache = tmp_path / "log.jsonl", tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nuke_hdmatt.cli", "matte", plate, trimap, "-o", "out/a.####.exr",
         *FAST, "--cache", str(cache), "--json-log", str(log)],
        cwd=tmp_path, env=hdmatt_env(tmp_path), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and any(e["event"] == "frame_done" for e in json_events(log)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "cancelled" in err
    assert f"hdmatt: {told}" in err and (signum == signal.SIGINT) == ("Ctrl-C" in err), err
    events = json_events(log)
    done = [e["frame"] for e in events if e["event"] == "frame_done"]
    assert 1 <= len(done) < FRAMES
    assert events[-1]["event"] == "shot_done" and events[-1]["cancelled"] is True
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"a.{f:04d}.exr" for f in done]
    for name in written:  # every kept frame is complete and readable
        spec, _ = read_image(tmp_path / "out" / name)
        assert "A" in spec.channelnames
    assert temp_leftovers(tmp_path / "out", cache) == []


def test_cancel_through_engine_callback_stops_mid_frame(tmp_path):
    import torch
    torch.set_num_threads(1)
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.shot.cache import FrameCache
    from nuke_hdmatt.shot.matte import matte_shot
    from nuke_hdmatt.shot.plan import MatteJob
    from nuke_hdmatt.shot.progress import ProgressReporter

    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3], size=64)
    out = tmp_path / "out"
    job = MatteJob(plate=plate, trimap=trimap, output=str(out / "a.####.exr"), frames=[1, 2, 3])
    engine = Engine.load(patch=32, overlap=8)
    calls = {"n": 0}

    class CancelInFrame2:
        """True once frame 2 has started patches: the engine must raise Cancelled."""
        def __call__(self):
            return calls["n"] >= 2 and reporter._frame == 2

    reporter = ProgressReporter(3, quiet=True)
    original = reporter.patch

    def counting_patch(done, total, stage="", **kw):
        calls["n"] += 1
        original(done, total, stage, **kw)
    reporter.patch = counting_patch
    result = matte_shot(job, engine, cache=FrameCache(tmp_path / "c"), reporter=reporter,
                        cancel=CancelInFrame2())
    assert result.cancelled and result.exit_code == 130
    assert result.done == [1] and not result.failed
    assert sorted(p.name for p in out.iterdir()) == ["a.0001.exr"]
    assert temp_leftovers(out, tmp_path / "c") == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_stop_while_the_engine_loads_still_ends_the_log_with_shot_done(tmp_path, monkeypatch,
                                                                          capsys):
    """A SIGTERM during the engine's load ended the run (exit 143) with no last record:
    a log reader (the Nuke node, a farm parser) was left waiting for it."""
    import os

    from nuke_hdmatt.shot import workflow
    from nuke_hdmatt.shot.plan import MatteJob

    plate, trimap = exr_sequence(tmp_path / "in", [1, 2], size=48)
    log = tmp_path / "log.jsonl"

    def loading(options, reporter):
        os.kill(os.getpid(), signal.SIGTERM)  # the farm's cancel, while the network loads
        return object()

    monkeypatch.setattr(workflow, "load_engine", loading)
    job = MatteJob(plate=plate, trimap=trimap, output=str(tmp_path / "out/a.####.exr"))
    rc = workflow.run_matte(job, workflow.RunSettings(no_cache=True, json_log=str(log)))
    assert rc == 143
    last = json_events(log)[-1]
    assert last["event"] == "shot_done" and last["cancelled"] is True and last["done"] == []
    assert "cancelled; 0 frame(s) finished" in capsys.readouterr().err
