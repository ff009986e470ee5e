"""The HDMatt node in the ``nuke`` test double: generate, read back, channel copy, cache,
cancel, failure reporting. The engine is the real ``hdmatt matte`` (tiny 48x48 frames) except
where a failure or a hang is needed (``tests/nuke_double/standin_engine.py``)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from nuke_double.fixtures import fake_nuke  # noqa: F401  (a pytest fixture, requested by name)

ROOT = Path(__file__).resolve().parents[1]
HDMATT = ROOT / ".venv" / "bin" / "hdmatt"
STANDIN = Path(__file__).resolve().parent / "nuke_double" / "standin_engine.py"
W = H = 48


def write_exr(path, pixels, channels):
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], len(channels), oiio.FLOAT)
    spec.channelnames = channels
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec)
    out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()


def read_exr(path):
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    px = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
    inp.close()
    return dict(zip(spec.channelnames, np.moveaxis(px, -1, 0)))


def plate_pixels(seed):
    yy, xx = np.mgrid[0:H, 0:W] / W
    rng = np.random.default_rng(seed)
    return np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 0.8 + 0.05 * rng.random((H, W, 3))


def trimap_pixels():
    tri = np.zeros((H, W), np.float32)
    tri[:, 18:30] = 0.5
    tri[:, 30:] = 1.0
    return np.repeat(tri[..., None], 4, -1)  # trimap in rgba, as a roto/keyer would give


@pytest.fixture
def shot(fake_nuke, tmp_path, monkeypatch):
    """A saved script with plate + trimap Reads (2 frames) and an HDMatt node."""
    nuke = fake_nuke
    if not os.access(HDMATT, os.X_OK):
        pytest.skip(f"engine not installed at {HDMATT} (run install.py)")
    monkeypatch.setenv("HDMATT_ENGINE", str(HDMATT))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # to see leftovers of a run
    src = tmp_path / "src"
    src.mkdir()
    for f in (1, 2):
        write_exr(src / f"plate.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
        write_exr(src / f"trimap.{f:04d}.exr", trimap_pixels(), ("R", "G", "B", "A"))
    root = nuke.root()
    root["name"].setValue(str(tmp_path / "shot010.nk"))
    root["format"].setValue(f"{W} {H} 0 0 {W} {H} 1 tiny")
    root["first_frame"].setValue(1)
    root["last_frame"].setValue(2)
    root["colorManagement"].setValue("OCIO")
    root["OCIO_config"].setValue("cg-config-v2.1.0_aces-v1.3_ocio-v2.3")
    root["workingSpaceLUT"].setValue("ACEScg")
    plate = nuke.nodes.Read(file=str(src / "plate.####.exr"), first=1, last=2)
    trimap = nuke.nodes.Read(file=str(src / "trimap.####.exr"), first=1, last=2)
    node = nuke.createNode("HDMatt")
    node.setInput(0, plate)
    node.setInput(1, trimap)
    node["cache"].setValue(str(tmp_path / "cache"))
    return nuke, node, plate, src, tmp_path


def finish_in_gui(nuke, node, timeout=120):
    """Be Nuke's main-thread event loop until the node's engine run (worker thread) ends."""
    from nuke_hdmatt.nuke import node as hdmatt_node
    run = hdmatt_node.running(node)
    assert run is not None, "no engine run in progress"
    deadline = time.monotonic() + timeout
    while run.thread.is_alive():
        nuke._process_events(0.02)
        assert time.monotonic() < deadline, "engine run did not finish"
    while nuke._process_events(0.01):
        pass
    assert hdmatt_node.running(node) is None
    return run


def render(nuke, node, path, channels="rgba"):
    w = nuke.nodes.Write(file=str(path), channels=channels, raw=True, datatype="32 bit float")
    w.setInput(0, node)
    nuke.execute(w, 1, 2)
    nuke.delete(w)


def test_menu_and_gizmo_knobs(fake_nuke):
    nuke = fake_nuke
    assert nuke.menu("Nodes").findItem("HDMatt").findItem("HDMatt").command == \
        "nuke.createNode('HDMatt')"
    node = nuke.createNode("HDMatt")
    assert node.Class() == "HDMatt"
    for name in ("output_channel", "plate_colorspace", "patch", "overlap", "k", "pool", "device",
                 "precision", "prior", "cache", "generate", "generate_current", "clear_cache",
                 "status"):
        assert node.knob(name) is not None, name
    # the output channel is the inner Copy's channel knob, linked (knob type 41)
    assert node["output_channel"].Class() == "Link_Knob"
    assert node["output_channel"].getLinkedKnob() is node.node("copy_alpha")["to0"]
    assert node["output_channel"].value() == "rgba.alpha"
    assert node["prior"].values() == ["auto", "cascade", "global", "local"]
    assert node["prior"].value() == "auto"
    assert node["detail"].value() == pytest.approx(0.25)   # the fixed step, when asked for
    assert node["detail_auto"].value() is True              # the default: predicted per pixel
    assert node["flip"].value() is True                     # the default: flip-averaged
    assert node["snap"].value() == pytest.approx(0.01)      # the engine's default threshold
    assert not node["detail"].enabled()                     # greyed out from creation
    assert (node["patch"].value(), node["overlap"].value(), node["k"].value(),
            node["pool"].value()) == (320, 32, 3, 30)
    # unsaved script: the default alpha path is relative (beside a script not saved yet)
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    assert not os.path.isabs(hdmatt_knobs.alpha_sequence(node).pattern)
    read = node.node("alpha_read")
    assert read["raw"].value()
    assert read["on_error"].value() == "error"  # terminal mode: a missing frame is an error
    nuke.GUI = True
    assert read["on_error"].value() == "black"
    assert node.node("copy_alpha")["bbox"].value() == "B"


def alpha_file(node) -> str:
    """The node's alpha sequence, ``####`` for the frame."""
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    return hdmatt_knobs.alpha_sequence(node).pattern.replace("%04d", "####")


def engine_alpha(node, frame):
    return read_exr(alpha_file(node).replace("####", f"{frame:04d}"))["A"]


@pytest.fixture
def generated(shot):
    """``shot`` after Generate (the button, as a user presses it) made both frames."""
    nuke, node, *_ = shot
    assert node["generate"].execute() is None
    return shot


def test_every_engine_setting_has_a_knob_that_marks_the_node_stale(fake_nuke):
    """A new InferenceSettings field needs its knob in STALE_KNOBS (or the node would not
    say stale when it changes) and on the gizmo; batch, context and prior_max_side have no
    knob (the engine picks them)."""
    from dataclasses import fields

    from nuke_hdmatt.engine.settings import InferenceSettings
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    node = fake_nuke.createNode("HDMatt")
    settings = {f.name for f in fields(InferenceSettings)} - {"batch", "context", "prior_max_side"}
    assert settings <= set(hdmatt_knobs.STALE_KNOBS)
    assert all(node.knob(name) is not None for name in settings)


def test_nothing_generated_renders_black_in_the_gui(shot):
    nuke, node, plate, src, tmp_path = shot
    # the node never computes during a render: without Generate the GUI shows black alpha
    nuke.GUI = True
    render(nuke, node, tmp_path / "before.####.exr")
    assert not read_exr(tmp_path / "before.0001.exr")["A"].any()


def test_generate_writes_every_frame_and_leaves_nothing_behind(shot):
    nuke, node, plate, src, tmp_path = shot
    graph = lambda: (sorted(n.name() for n in nuke.root().nodes()),
                     sorted(n.name() for n in node.nodes()))
    graph_before = graph()
    assert node["generate"].execute() is None
    assert node.node("alpha_read").reloads == 3  # as each of the 2 frames landed, and at the end
    assert alpha_file(node) == str(tmp_path / "hdmatt" / "shot010" / "HDMatt1" / "alpha.####.exr")
    assert node["status"].value().startswith("2 cached, 0 missing, 0 failed"), node["status"].value()
    task = nuke.ProgressTask.tasks[-1]
    assert task.progress[-1] == 100 and any("frame 2" in m for m in task.messages)
    # temporary Write nodes and exported EXRs are gone
    assert graph() == graph_before
    assert list((tmp_path / "tmp").iterdir()) == []


def test_render_reads_back_the_engines_alpha(generated):
    nuke, node, plate, src, tmp_path = generated
    render(nuke, node, tmp_path / "out.####.exr")
    trimap = trimap_pixels()[..., 3]
    for f in (1, 2):
        out = read_exr(tmp_path / f"out.{f:04d}.exr")
        assert np.array_equal(out["A"], engine_alpha(node, f))  # the Read picked it up
        np.testing.assert_allclose(np.stack([out["R"], out["G"], out["B"]], -1),
                                   plate_pixels(f), atol=1e-6)  # plate passes through raw
        assert np.all(out["A"][trimap == 0] == 0) and np.all(out["A"][trimap == 1] == 1)
        assert 0 <= out["A"].min() and out["A"].max() <= 1


def test_output_channel_in_its_own_layer_leaves_rgba_alone(generated):
    nuke, node, plate, src, tmp_path = generated
    node["output_channel"].getLinkedKnob().setValue("hdmatt.alpha")
    render(nuke, node, tmp_path / "layer.####.exr", channels="all")
    out = read_exr(tmp_path / "layer.0001.exr")
    assert np.array_equal(out["hdmatt.A"], engine_alpha(node, 1))
    assert "A" not in out  # the plate has no alpha and HDMatt did not add one


def test_rerun_hits_the_cache_and_a_changed_frame_is_recomputed(generated):
    nuke, node, plate, src, tmp_path = generated
    from nuke_hdmatt.nuke import node as hdmatt_node
    first = engine_alpha(node, 2)
    assert hdmatt_node.generate(node) is True
    msgs = nuke.ProgressTask.tasks[-1].messages
    assert "frame 1: cache hit" in msgs and "frame 2: cache hit" in msgs

    # the compositor changes frame 2 of the plate: only frame 2 is recomputed
    write_exr(src / "plate.0002.exr", plate_pixels(2)[::-1], ("R", "G", "B"))
    plate["reload"].execute()
    assert hdmatt_node.generate(node) is True
    msgs = nuke.ProgressTask.tasks[-1].messages
    assert "frame 1: cache hit" in msgs and "frame 2: done" in msgs
    assert not np.array_equal(engine_alpha(node, 2), first)
    # and the node shows the new frame: the Read was reloaded
    node["output_channel"].getLinkedKnob().setValue("hdmatt.alpha")
    render(nuke, node, tmp_path / "new.####.exr", channels="all")
    assert np.array_equal(read_exr(tmp_path / "new.0002.exr")["hdmatt.A"], engine_alpha(node, 2))


def test_clear_cache_removes_the_frames_and_the_entries(generated):
    nuke, node, plate, src, tmp_path = generated
    # Clear cache: this node's frames and the shared cache folder's entries, via the engine
    from nuke_hdmatt.shot.cache import FrameCache
    alpha2 = Path(alpha_file(node).replace("####", "0002"))
    assert alpha2.exists() and len(FrameCache(node["cache"].value()).entries()) == 2
    assert node["clear_cache"].execute() is None
    assert not alpha2.exists() and FrameCache(node["cache"].value()).entries() == []
    assert node["status"].value().startswith("0 cached, 2 missing, 0 failed")
    nuke.GUI = True
    node["output_channel"].getLinkedKnob().setValue("hdmatt.alpha")
    render(nuke, node, tmp_path / "cleared.####.exr", channels="all")
    assert not read_exr(tmp_path / "cleared.0002.exr")["hdmatt.A"].any()  # black, not stale


def test_clear_cache_in_the_gui_clears_the_shared_folder_off_the_main_thread(generated):
    nuke, node, plate, src, tmp_path = generated
    from nuke_hdmatt.shot.cache import FrameCache
    nuke.GUI = True
    nuke._answers[:] = [True]
    assert node["clear_cache"].execute() is None  # returns before the engine is done
    [worker] = [t for t in threading.enumerate() if t.name == "HDMatt clear HDMatt1"]
    deadline = time.monotonic() + 60
    while worker.is_alive():
        nuke._process_events(0.02)
        assert time.monotonic() < deadline
    assert FrameCache(node["cache"].value()).entries() == []
    assert nuke._messages == ["Delete 2 alpha frames of HDMatt1 and every entry in "
                              f"{node['cache'].value()}?"]
    # a failure is reported on the main thread
    os.environ["HDMATT_ENGINE"] = "/bin/false"  # the shot fixture set it; monkeypatch restores
    nuke._answers[:] = [True]
    assert node["clear_cache"].execute() is None
    # /bin/false fails at once: its worker may be gone already
    workers = [t for t in threading.enumerate() if t.name == "HDMatt clear HDMatt1"]
    while any(t.is_alive() for t in workers) or nuke._process_events(0.02):
        nuke._process_events(0.02)
    assert node["status"].value().startswith("error: could not clear"), node["status"].value()
    assert nuke._messages[-1].startswith("HDMatt failed\nHDMatt1: could not clear")


def test_a_trimap_read_that_bends_its_values_is_a_warning(shot):
    nuke, node, plate, src, tmp_path = shot
    trimap = node.input(1)
    trimap["colorspace"].setValue("sRGB - Texture")
    nuke._console.clear()
    assert node["generate"].execute() is None
    assert any("the trimap input's Read converts from 'sRGB - Texture'" in m and "tick raw" in m
               for m in nuke._console), nuke._console
    assert "1 warning(s) from the last Generate, first: the trimap input's Read" in \
        node["status"].value()
    trimap["raw"].setValue(True)
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    assert hdmatt_knobs.input_warnings(node) == []
    # a raw plate Read delivers the file's encoding, which an empty plate colour space
    # calls the working space: the network sees it wrongly, without a word
    plate["raw"].setValue(True)
    plate["colorspace"].setValue("sRGB - Texture")
    [said] = hdmatt_knobs.input_warnings(node)
    assert f"Read {plate.name()} is raw" in said and "plate colour space is empty" in said
    node["plate_colorspace"].setValue("sRGB - Texture")
    assert hdmatt_knobs.input_warnings(node) == []
    node["plate_colorspace"].setValue("")  # a file in the working space itself: raw is right
    plate["colorspace"].setValue(f"default ({nuke.root()['workingSpaceLUT'].value()})")
    assert hdmatt_knobs.input_warnings(node) == []


def test_engine_warnings_reach_the_error_console_and_the_status(shot):
    """A trimap that is all unknown on frame 2 (the wrong channel, a blank roto) gives an
    alpha, but the compositor is told: Nuke's error console, the status line and label,
    until a Generate without warnings."""
    nuke, node, plate, src, tmp_path = shot
    write_exr(src / "trimap.0002.exr", np.full((H, W, 4), 0.5), ("R", "G", "B", "A"))
    nuke._console.clear()
    assert node["generate"].execute() is None
    assert node["status"].value().startswith("2 cached, 0 missing, 0 failed")
    warned = [m for m in nuke._console if "every pixel of the trimap is unknown" in m]
    assert len(warned) == 1 and warned[0].startswith("HDMatt: HDMatt1: frame 2: trimap.0002.exr: "), \
        nuke._console  # the engine's temporary folder is not named: it is gone
    assert "1 warning(s) from the last Generate, first: frame 2:" in node["status"].value()
    assert node["label"].value().endswith(" warnings")
    write_exr(src / "trimap.0002.exr", trimap_pixels(), ("R", "G", "B", "A"))
    node.input(1)["reload"].execute()
    nuke._console.clear()
    assert node["generate"].execute() is None
    assert nuke._console == [] and "warning" not in node["status"].value()
    assert node["label"].value() == "1-2"


def test_matte_input_derives_the_trimap(shot):
    nuke, node, plate, src, tmp_path = shot
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    from nuke_hdmatt.nuke import node as hdmatt_node
    matte = node.input(1)
    node.setInput(1, None)
    node.setInput(2, matte)
    node["band"].setValue(6)
    node["prior"].setValue("global")
    assert hdmatt_knobs.inference_settings(node).detail == "auto"
    node["detail"].setValue(0.6)
    assert hdmatt_knobs.inference_settings(node).detail == "auto"   # the slider waits
    node["detail_auto"].setValue(False)
    nuke._fire_knob_changed(node, "detail_auto")
    assert node["detail"].enabled()                                # the slider is the step now
    work = tmp_path / "work"
    work.mkdir()
    paths = hdmatt_node.export_inputs(node, [1], str(work))
    assert paths["trimap"] is None and sorted(os.listdir(work)) == ["matte.0001.exr", "plate.0001.exr"]
    exported = read_exr(work / "plate.0001.exr")
    assert sorted(exported) == ["B", "G", "R"]  # rgb only, raw float
    np.testing.assert_array_equal(exported["R"], plate_pixels(1)[..., 0].astype(np.float32))
    argv = hdmatt_knobs.matte_job(node, paths, [1]).argv("hdmatt")
    i = argv.index("--trimap-from-matte")
    assert argv[i:i + 4] == ["--trimap-from-matte", paths["matte"], "--band", "6"]
    assert argv[argv.index("--ocio") + 1] == "ocio://cg-config-v2.1.0_aces-v1.3_ocio-v2.3"
    assert argv[argv.index("--plate-colorspace") + 1] == "ACEScg"
    assert argv[argv.index("--prior") + 1] == "global"
    assert argv[argv.index("--detail") + 1] == "0.6"
    # the engine's own parser takes every value the knob offers
    from nuke_hdmatt.cli import build_parser, engine_kwargs
    for value in node["prior"].values():
        build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", "--prior", value])
    args = build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", "--detail", "0.6"])
    assert engine_kwargs(args)["settings"].detail == 0.6
    node["detail_auto"].setValue(True)
    nuke._fire_knob_changed(node, "detail_auto")
    assert not node["detail"].enabled()
    argv = hdmatt_knobs.matte_job(node, paths, [1]).argv("hdmatt")
    assert argv[argv.index("--detail") + 1] == "auto" and "--no-flip" not in argv
    node["flip"].setValue(False)
    argv = hdmatt_knobs.matte_job(node, paths, [1]).argv("hdmatt")
    assert "--no-flip" in argv
    assert float(argv[argv.index("--snap") + 1]) == pytest.approx(0.01)
    node["snap"].setValue(0.0)
    argv = hdmatt_knobs.matte_job(node, paths, [1]).argv("hdmatt")
    assert engine_kwargs(build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr",
                                                    *argv[argv.index("--patch"):]])
                         )["settings"].snap == 0.0
    node["snap"].setValue(0.4)                      # beyond the engine's range: refused here
    from nuke_hdmatt.errors import UsageError
    with pytest.raises(UsageError, match=r"HDMatt1: --snap must be from 0 to 0.25"):
        hdmatt_knobs.matte_job(node, paths, [1])
    node["snap"].setValue(0.01)
    assert engine_kwargs(build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr",
                                                    *argv[argv.index("--patch"):]])
                         )["settings"].flip is False
    args = build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", "--detail", "auto"])
    assert engine_kwargs(args)["settings"].detail == "auto"
    # exposure: fit by default, stops taken as the engine writes them
    assert node["exposure"].value() == "fit" and "--exposure=fit" in argv
    node["exposure"].setValue(" -2.0 ")
    argv = hdmatt_knobs.matte_job(node, paths, [1]).argv("hdmatt")
    assert "--exposure=-2" in argv
    assert build_parser().parse_args(argv[1:]).exposure == "-2"
    node["exposure"].setValue("bright")
    with pytest.raises(UsageError, match=r"HDMatt1\.exposure: 'bright': give fit, off"):
        hdmatt_knobs.matte_job(node, paths, [1])


@pytest.fixture
def standin(shot, monkeypatch):
    monkeypatch.setenv("HDMATT_ENGINE", str(STANDIN))
    return shot


def test_cancel_stops_the_engine_and_cleans_up(standin, monkeypatch):
    nuke, node, plate, src, tmp_path = standin
    mark = tmp_path / "sigint"
    monkeypatch.setenv("STANDIN_MODE", "hang")
    monkeypatch.setenv("STANDIN_MARK", str(mark))
    _patient_stop(monkeypatch)
    # the user presses Cancel once the engine reports patch progress
    nuke.ProgressTask.cancel_when = staticmethod(
        lambda task: any("patches" in m for m in task.messages))
    assert node["generate_current"].execute() is None
    assert mark.read_text() == "SIGINT"  # the engine got Ctrl-C: its clean-stop path
    assert "cancelled" in node["status"].value()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert nuke._messages == []  # a cancel is not an error dialog


def test_cancel_keeps_the_frames_finished_before_it(standin, monkeypatch):
    nuke, node, plate, src, tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "slow")
    monkeypatch.setenv("STANDIN_STEP_S", "0.3")
    monkeypatch.setenv("STANDIN_PAUSE_S", "60")  # a Cancel that did not stop it: frame 2 lands
    # Cancel once frame 1's verdict is in (at its last patch the verdict may not be written)
    nuke.ProgressTask.cancel_when = staticmethod(lambda task: "frame 1: done" in task.messages)
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert hdmatt_node.generate(node) is False
    assert "cancelled" in node["status"].value()
    assert json.loads(node["generated"].value())["frames"] == "1"  # frame 1 finished: recorded


def _patient_stop(monkeypatch):
    """A Ctrl-C'd stand-in that handles it writes its mark and exits at once; on a loaded
    machine that can take longer than the product's grace before a kill (1 s)."""
    from nuke_hdmatt.nuke import engine_call
    monkeypatch.setattr(engine_call, "STOP_GRACE_S", 60.0)


def _engine_started(nuke, node, mark=None, timeout=60):
    """GUI Generate: be the event loop until the engine reports its first patch progress."""
    from nuke_hdmatt.nuke import node as hdmatt_node
    deadline = time.monotonic() + timeout
    while not any("patches" in m for t in nuke.ProgressTask.tasks for m in t.messages):
        nuke._process_events(0.02)
        assert time.monotonic() < deadline, "engine did not start"
    return hdmatt_node.running(node)


@pytest.mark.parametrize("how", ["script closed", "node deleted", "node renamed, then deleted"])
def test_the_engine_stops_with_its_node_or_script(standin, monkeypatch, capsys, how):
    """The engine runs in a session of its own: left alone it would outlive a deleted node, a
    closed script or Nuke itself, holding the GPU."""
    nuke, node, plate, src, tmp_path = standin
    mark = tmp_path / "sigint"
    monkeypatch.setenv("STANDIN_MODE", "hang")
    monkeypatch.setenv("STANDIN_MARK", str(mark))
    _patient_stop(monkeypatch)
    nuke.GUI = True
    from nuke_hdmatt.nuke import engine_call
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert hdmatt_node.generate(node) is True
    run = _engine_started(nuke, node)
    assert len(engine_call._LIVE) == 1
    if how == "script closed":
        nuke.scriptClose()
        assert mark.read_text() == "SIGINT"  # stopped before the close goes on
        assert not os.path.exists(run.work)  # its exported inputs too: Nuke may be quitting
    else:
        if how.startswith("node renamed"):  # the run is the node's, not its name's
            old = node.name()
            node.setName("Renamed")
            assert hdmatt_node.running(node) is run
            assert hdmatt_node.generate(node) is False  # one run a node, whatever its name
            assert "already generating" in node["status"].value()
            assert nuke._messages == ["HDMatt failed\nRenamed: already generating; cancel that "
                                      "run first"]
            nuke._messages.clear()
            other = nuke.createNode("HDMatt")
            other.setName(old)  # a new node under the old name: not the one generating
            assert hdmatt_node.running(other) is None
        run.later(hdmatt_node._show_running, node, 50)  # a progress update, queued before...
        nuke.delete(node)                                # ...the node goes
    deadline = time.monotonic() + 90
    while run.thread.is_alive():
        nuke._process_events(0.02)
        assert time.monotonic() < deadline, "the engine run did not stop"
    assert mark.read_text() == "SIGINT"
    assert engine_call._LIVE == set()
    assert run not in hdmatt_node._RUNS
    assert nuke._messages == []  # no dialog about a node that is gone
    assert "Traceback" not in capsys.readouterr().err  # no queued call touched the deleted node
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_node_deleted_while_its_verdict_waits_for_the_main_thread_gets_none(
        standin, monkeypatch, capsys):
    """The worker checks for a stop, then queues the verdict for the main thread: a node
    deleted in between (its deletion already queued) must not be reported on."""
    nuke, node, plate, src, tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "fail")
    nuke.GUI = True
    from nuke_hdmatt.nuke import node as hdmatt_node
    queue_result = nuke.executeInMainThreadWithResult

    def deleted_first(call, args=()):
        nuke.executeInMainThread(nuke.delete, (node,))  # the user's click, just before
        return queue_result(call, args)

    monkeypatch.setattr(nuke, "executeInMainThreadWithResult", deleted_first)
    assert hdmatt_node.generate(node) is True
    run = hdmatt_node.running(node)
    deadline = time.monotonic() + 90
    while run.thread.is_alive():
        nuke._process_events(0.02)
        assert time.monotonic() < deadline, "the engine run did not end"
    assert node._deleted and run.stop.is_set()
    assert run.ok is False and run not in hdmatt_node._RUNS
    assert nuke._messages == []
    assert "Traceback" not in capsys.readouterr().err


def test_generate_removes_the_exports_of_a_nuke_that_crashed(shot):
    """A Generate's exported inputs (float EXRs, gigabytes) went only with its worker or its
    script: a crashed or killed Nuke left them in the temp folder for good."""
    import socket
    import subprocess
    import sys

    nuke, node, plate, src, tmp_path = shot
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a Nuke that is no more
    tmp = tmp_path / "tmp"
    host = socket.gethostname()
    owners = {"hdmatt_nuke_crashed": f"{host} {gone.pid}",
              "hdmatt_nuke_running": f"{host} {os.getpid()}",
              "hdmatt_nuke_other_host": f"render07 {gone.pid}"}
    for name, owner in owners.items():
        (tmp / name).mkdir()
        (tmp / name / "owner").write_text(owner + "\n")
        (tmp / name / "plate.0001.exr").write_bytes(b"exr")
    for name, age in (("hdmatt_nuke_old_version", 2 * 86400), ("hdmatt_nuke_recent", 60)):
        (tmp / name).mkdir()
        os.utime(tmp / name, (time.time() - age, time.time() - age))
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert hdmatt_node.generate(node, "1") is True, node["status"].value()
    assert sorted(p.name for p in tmp.iterdir()) == [
        "hdmatt_nuke_other_host", "hdmatt_nuke_recent", "hdmatt_nuke_running"]


def test_engines_still_running_are_stopped_when_python_exits(tmp_path):
    """``atexit``: Nuke quitting stops what the node started (its own session outlives it)."""
    mark = tmp_path / "sigint"
    code = f"""
import os, sys, threading, time
os.environ.update(STANDIN_MODE="hang", STANDIN_MARK={str(mark)!r})
from nuke_hdmatt.nuke import engine_call
engine_call.STOP_GRACE_S = 60.0  # a loaded machine: the stand-in's clean stop, not a kill
log = {str(tmp_path / "log.jsonl")!r}
argv = [sys.executable, {str(STANDIN)!r}, "--json-log", log, "--frames", "1"]
threading.Thread(target=engine_call.run_engine, args=(argv, log, 1), daemon=True).start()
while not os.path.exists(log) or "patches" not in open(log).read():
    time.sleep(0.02)
print("started", flush=True)
"""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "started" in r.stdout, r.stderr
    assert mark.read_text() == "SIGINT"


@pytest.mark.parametrize("gui", [True, False])
def test_engine_failure_reported_on_node_and_to_user(standin, monkeypatch, capsys, gui):
    nuke, node, plate, src, tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "fail")
    nuke.GUI = gui
    from nuke_hdmatt.nuke import node as hdmatt_node
    if gui:  # the engine runs in a worker thread; Generate returns at once
        assert hdmatt_node.generate(node) is True
        assert finish_in_gui(nuke, node).ok is False
    else:
        assert hdmatt_node.generate(node) is False
    assert node["status"].value() == "error: frame 2: plate.0002.exr: truncated file"
    err = capsys.readouterr().err
    if gui:
        assert nuke._messages == ["HDMatt failed\nHDMatt1: frame 2: plate.0002.exr: truncated file"]
        assert err == ""
    else:
        assert err == "HDMatt: HDMatt1: frame 2: plate.0002.exr: truncated file\n"
    assert hdmatt_node.update_status(node).startswith("0 cached, 1 missing, 1 failed "
                                                      "(frames 1-2); failed: 2; missing")


def test_a_failed_frame_stays_failed_beside_an_earlier_alpha(standin, monkeypatch, capsys):
    """A failed run keeps the alpha an earlier one left: the frame must still read as failed
    (status, label, a render's warning), until something writes that frame again."""
    nuke, node, plate, src, tmp_path = standin
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    from nuke_hdmatt.nuke import node as hdmatt_node
    earlier = Path(hdmatt_knobs.alpha_sequence(node).path(2))
    earlier.parent.mkdir(parents=True)
    write_exr(earlier, np.full((H, W, 1), 0.5, np.float32), ("A",))
    monkeypatch.setenv("STANDIN_MODE", "fail")
    assert hdmatt_node.generate(node) is False
    status = hdmatt_node.update_status(node)
    assert status.startswith("0 cached, 1 missing, 1 failed (frames 1-2); failed: 2 (an earlier "
                             "run's alpha is on disk for 2: renders use it)"), status
    assert "failed 2" in node["label"].value()
    # a later Generate of frame 1 alone does not forget frame 2's failure
    assert hdmatt_node.generate(node, "1") is True
    assert "failed: 2" in hdmatt_node.update_status(node)
    capsys.readouterr()
    monkeypatch.setattr(nuke, "thisNode", lambda: node)  # a render loading the script
    hdmatt_node.on_create()
    assert "frames 2 failed at the last Generate" in capsys.readouterr().err
    # the farm (or anything) writes frame 2 again: no longer failed
    time.sleep(0.01)
    write_exr(earlier, np.full((H, W, 1), 0.25, np.float32), ("A",))
    os.utime(earlier, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    assert "0 failed" in hdmatt_node.update_status(node)
    assert "failed" not in node["label"].value()


def test_engine_crash_and_bad_input_are_one_line(standin, monkeypatch, capsys):
    nuke, node, plate, src, tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "crash")
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert hdmatt_node.generate(node) is False
    assert node["status"].value() == "error: hdmatt: error: ACEScg-typo: unknown colour space"
    node.setInput(1, None)
    assert hdmatt_node.generate(node) is False
    assert capsys.readouterr().err.splitlines()[-1] == \
        "HDMatt: HDMatt1: connect a trimap (or a matte to derive one)"
    node["frames"].setValue("5-1")
    assert hdmatt_node.generate(node) is False
    assert "HDMatt1.frames: range '5-1' runs backwards" in node["status"].value()


def test_broken_upstream_is_reported_not_raised(shot, capsys):
    nuke, node, plate, src, tmp_path = shot
    from nuke_hdmatt.nuke import node as hdmatt_node
    plate["last"].setValue(3)  # frame 3 of the plate does not exist
    assert hdmatt_node.generate(node, "2-3") is False
    status = node["status"].value()
    assert status.startswith("error: inputs, frames 2-3: ") and "plate.0003.exr" in status
    assert capsys.readouterr().err.count("\n") == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [n.Class() for n in nuke.root().nodes()] == ["Read", "Read", "HDMatt"]


def test_clear_cache_asks_in_the_gui(standin):
    nuke, node, plate, src, tmp_path = standin
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    from nuke_hdmatt.nuke import node as hdmatt_node
    nuke.GUI = True
    node["cache"].setValue("")
    seq = hdmatt_knobs.alpha_sequence(node)
    os.makedirs(os.path.dirname(seq.path(1)))
    for f in (1, 2):
        write_exr(seq.path(f), trimap_pixels(), ("R", "G", "B", "A"))
    nuke._answers[:] = [False]
    assert hdmatt_node.clear_cache(node) == 0 and os.path.exists(seq.path(2))
    assert nuke._messages[-1] == "Delete 2 alpha frames of HDMatt1?"
    nuke._answers[:] = [True]
    assert hdmatt_node.clear_cache(node) == 2 and not os.path.exists(seq.path(1))
    assert node["status"].value() == ("0 cached, 2 missing, 0 failed (frames 1-2); missing frames "
                                      "are black in the viewer and an error in renders")


def test_broken_engine_install_is_one_line(shot, monkeypatch, tmp_path):
    nuke, node, plate, src, _ = shot
    broken = tmp_path / "hdmatt_broken"   # not "hdmatt": the alpha folder beside the script
    broken.write_text("#!/nonexistent/python\n")
    broken.chmod(0o755)
    monkeypatch.setenv("HDMATT_ENGINE", str(broken))
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert hdmatt_node.generate(node) is False
    assert node["status"].value() == \
        f"error: {broken}: cannot start the engine (No such file or directory); re-run install.py"
    # the next idle update rebuilds the status from disk: the error stays on it and the label
    hdmatt_node.update_status(node)
    assert node["status"].value().startswith(f"error: {broken}: cannot start the engine")
    assert node["label"].value() == "not generated failed"
    # until a Generate starts
    monkeypatch.setenv("HDMATT_ENGINE", str(HDMATT))
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hdmatt_node.generate(node, "1") is True, node["status"].value()
    assert not node["status"].value().startswith("error") and "failed" not in node["label"].value()
