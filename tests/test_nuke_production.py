"""The HDMatt node under production conditions (issue 14), one test (or more) per defect:
Nuke stays responsive, renders never lie, paths / colour / bboxes, farm, install.

Each runs in the ``nuke`` test double (``tests/nuke_double``), which refuses Nuke calls from
other threads, models ``$gui``, TCL, bboxes and Link_Knob, so that each would fail on the
plugin as it was before the issue. The engine is the real ``hdmatt matte`` where pixels
matter, else the stand-in (``tests/nuke_double/standin_engine.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from nuke_double.fixtures import fake_nuke  # noqa: F401  (a pytest fixture, requested by name)
from test_nuke_node import (  # noqa: F401  (shot, standin: pytest fixtures)
    STANDIN,
    H,
    W,
    finish_in_gui,
    plate_pixels,
    read_exr,
    render,
    shot,
    standin,
    trimap_pixels,
    write_exr,
)

ROOT = Path(__file__).resolve().parents[1]


def hd():
    from nuke_hdmatt.nuke import node as hdmatt_node
    return hdmatt_node


def knobs():
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    return hdmatt_knobs


def write_alphas(node, frames, value=0.25):
    seq = knobs().alpha_sequence(node)
    os.makedirs(os.path.dirname(seq.path(frames[0])), exist_ok=True)
    for f in frames:
        write_exr(seq.path(f), np.full((H, W, 1), value * f, np.float32), ("A",))
    return seq


def data_window(path):
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    inp.close()
    return (spec.x, spec.y, spec.width, spec.height), spec


# ---------------------------------------------------------------- 1. responsiveness


def test_1_gui_generate_returns_at_once_engine_in_a_worker(standin, monkeypatch):
    nuke, node, plate, src, tmp_path = standin
    monkeypatch.setenv("STANDIN_MODE", "slow")  # 100 frames, ~0.03 s each
    monkeypatch.setenv("STANDIN_STEP_S", "0.01")
    nuke.root()["last_frame"].setValue(100)  # the Reads hold their frame 2 after it
    nuke.GUI = True
    assert node["generate"].execute() is None  # the button: returns while the engine runs
    run = hd().running(node)
    assert run is not None and run.thread.is_alive(), node["status"].value()
    assert hd().generate(node) is False  # a second press while it runs is refused
    assert nuke._messages[-1].endswith("HDMatt1: already generating; cancel that run first")
    labels, polls = set(), 0
    while run.thread.is_alive():
        nuke._process_events(0.02)
        # the main thread is free: the UI can read and edit the script meanwhile
        node["band"].value()
        labels.add(node["label"].value())
        polls += 1
    while nuke._process_events(0.01):
        pass
    assert polls > 50
    assert any(lab.startswith("running ") and lab.endswith("%") for lab in labels), labels
    task = nuke.ProgressTask.tasks[-1]
    assert task.threads == {run.thread.name}  # the progress bar was driven from the worker
    assert task.progress[-1] == 100
    # a Nuke call from the worker would have been refused and reported; none was
    assert not node["status"].value().startswith("error"), node["status"].value()
    assert node.node("alpha_read").reloads >= 100  # the Viewer follows each finished frame


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_1_cancel_kills_a_stubborn_engine_within_a_second(standin, monkeypatch):
    from nuke_hdmatt.nuke import engine_call
    nuke, node, plate, src, tmp_path = standin
    mark = tmp_path / "pids"
    monkeypatch.setenv("STANDIN_MODE", "stubborn")
    monkeypatch.setenv("STANDIN_MARK", str(mark))
    nuke.ProgressTask.cancel_when = staticmethod(
        lambda task: any("patches" in m for m in task.messages))
    nuke.GUI = True
    # what others are writing into the same folder now: the farm's other frames, another node
    out = Path(knobs().alpha_sequence(node).path(nuke.frame()))
    out.parent.mkdir(parents=True, exist_ok=True)
    theirs = [out.parent / f".{out.stem[:-4]}9999.farm.tmp.exr",
              out.parent / f".{out.stem[:-4]}x{out.stem[-4:]}.other.tmp.exr"]
    for path in theirs:
        path.write_bytes(b"half an EXR")
    assert hd().generate_current(node) is True
    run = finish_in_gui(nuke, node, timeout=30)
    task = nuke.ProgressTask.tasks[-1]
    stopped = time.monotonic()
    # the product's grace before a kill, and the machine's load (a loaded CI's seconds)
    assert task.cancelled_at is not None
    assert stopped - task.cancelled_at < engine_call.STOP_GRACE_S + 4
    assert "cancelled" in node["status"].value() and run.ok is False
    engine, helper = (int(p) for p in mark.read_text().split())
    for pid in (engine, helper):  # the whole process group went, helpers included
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            if _zombie(pid):  # killed, waiting for its reaper (init, for the helper)
                break
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"process {pid} survived the cancel")
    assert list((tmp_path / "tmp").iterdir()) == []
    # the killed engine's own temp file went; the others' stayed
    assert sorted(out.parent.iterdir()) == sorted(theirs)


def test_double_refuses_nuke_calls_from_other_threads(fake_nuke):
    import threading
    nuke = fake_nuke
    node = nuke.nodes.NoOp()
    seen = {}

    def worker():
        try:
            node.name()
        except RuntimeError as exc:
            seen["refused"] = str(exc)
        seen["result"] = nuke.executeInMainThreadWithResult(node.name)
        nuke.executeInMainThread(lambda text: node["label"].setValue(text), ("from worker",))
        task = nuke.ProgressTask("t")
        task.setProgress(50)  # allowed from any thread
        seen["task"] = task

    t = threading.Thread(target=worker, name="w")
    t.start()
    while t.is_alive():
        nuke._process_events(0.02)
    nuke._process_events(0.01)
    assert "main thread" in seen["refused"]
    assert seen["result"] == node.name() and node["label"].value() == "from worker"
    assert seen["task"].threads == {"w"}


# ---------------------------------------------------------------- 2. one render, colour first


def test_2_export_is_one_render_pass(shot, tmp_path):
    nuke, node, plate, src, _ = shot
    nuke._renders.clear()
    (tmp_path / "w").mkdir()
    paths = hd().export_inputs(node, [1, 2], str(tmp_path / "w"))
    assert len(nuke._renders) == 1
    assert len(nuke._renders[0]["writes"]) == 2 and nuke._renders[0]["ranges"] == [(1, 2, 1)]
    assert paths["trimap"] and os.path.exists(paths["trimap"].replace("####", "0002"))


def test_2_a_failed_export_leaves_none_of_its_nodes_in_the_script(shot, tmp_path, monkeypatch):
    """A knob the Write refused (a working space its menu lacks, a studio's locked knob)
    came before the Write joined the cleanup list: it stayed in the user's script."""
    nuke, node, plate, src, _ = shot
    before = {n.name() for n in nuke.allNodes(recurseGroups=True)}
    refusing = nuke.Write._KNOBS["raw"]

    class Locked(refusing):
        def setValue(self, *args, **kwargs):
            raise ValueError("raw: locked by the studio's onCreate")

    monkeypatch.setitem(nuke.Write._KNOBS, "raw", Locked)
    (tmp_path / "w").mkdir()
    with pytest.raises(ValueError, match="locked"):
        hd().export_inputs(node, [1], str(tmp_path / "w"))
    assert {n.name() for n in nuke.allNodes(recurseGroups=True)} == before


def test_2_a_studios_write_defaults_do_not_change_the_export(shot, tmp_path):
    """A studio's knobDefault limiting Writes to a range skipped the frames outside it: the
    engine then failed on inputs that were never written."""
    nuke, node, plate, src, _ = shot
    nuke.knobDefault("Write.use_limit", "1")
    nuke.knobDefault("Write.first", "1")
    nuke.knobDefault("Write.last", "1")
    (tmp_path / "w").mkdir()
    paths = hd().export_inputs(node, [1, 2], str(tmp_path / "w"))
    assert os.path.exists(paths["plate"].replace("####", "0002"))
    assert os.path.exists(paths["trimap"].replace("####", "0002"))


def test_2_export_writes_the_trimap_in_half_and_refuses_to_fill_the_disk(shot, tmp_path,
                                                                           monkeypatch):
    import collections

    import OpenImageIO as oiio

    from nuke_hdmatt.nuke import export
    nuke, node, plate, src, _ = shot
    (tmp_path / "w").mkdir()
    paths = hd().export_inputs(node, [1], str(tmp_path / "w"))
    formats = {k: oiio.ImageInput.open(paths[k].replace("####", "0001")).spec().format
               for k in ("plate", "trimap")}
    assert formats == {"plate": oiio.TypeDesc("float"), "trimap": oiio.TypeDesc("half")}
    # a shot whose export the temp disk cannot hold: refused before any render
    usage = collections.namedtuple("usage", "total used free")
    need = 2 * node.input(0).width() * node.input(0).height() * export.EXPORT_BYTES_A_PIXEL
    monkeypatch.setattr(export.shutil, "disk_usage", lambda p: usage(10 * need, 9 * need, need - 1))
    nuke._renders.clear()
    assert hd().generate(node) is False
    assert "GiB free; generate fewer frames" in node["status"].value()
    assert nuke._renders == [] and list((tmp_path / "tmp").iterdir()) == []
    # in proxy mode the inputs' sizes are the proxy's: the export (proxy off) is full size
    full_width = node.input(0).width()
    nuke.root()["proxy"].setValue(True)
    assert node.input(0).width() == full_width // 2
    assert hd().generate(node) is False and nuke.root()["proxy"].value() is True
    assert "GiB free; generate fewer frames" in node["status"].value()
    nuke.root()["proxy"].setValue(False)
    monkeypatch.setattr(export.shutil, "disk_usage", lambda p: usage(10 * need, 9 * need, need))
    assert hd().export_inputs(node, [1, 2], str(tmp_path / "w"))["plate"]


def test_2_bad_colour_settings_fail_before_any_render(shot):
    nuke, node, plate, src, _ = shot
    nuke.root()["OCIO_config"].setValue("aces_1.2")  # not in this (fake) Nuke install
    nuke._renders.clear()
    assert hd().generate(node) is False
    assert node["status"].value().startswith("error: root.OCIO_config: config 'aces_1.2'")
    assert nuke._renders == []


# ---------------------------------------------------------------- 3. missing alpha


def test_3_missing_alpha_is_an_error_in_renders_black_in_the_gui(shot, tmp_path):
    nuke, node, plate, src, _ = shot
    write_alphas(node, [1])
    with pytest.raises(RuntimeError, match=r"HDMatt1\.alpha_read: Read error: .*alpha\.0002\.exr"):
        render(nuke, node, tmp_path / "farm.####.exr")  # terminal mode: nuke -x, the farm
    nuke.GUI = True
    nuke._run_update_ui()  # the GUI notices the frame on disk (here: made by the farm)
    render(nuke, node, tmp_path / "gui.####.exr")
    assert not read_exr(tmp_path / "gui.0002.exr")["A"].any()
    assert read_exr(tmp_path / "gui.0001.exr")["A"].max() == pytest.approx(0.25)
    status = hd().update_status(node)
    assert "1 missing" in status and "black in the viewer and an error in renders" in status


# ---------------------------------------------------------------- 4 + 5. range, stale, label


def update_ui_later(nuke, monkeypatch):
    """Nuke's idle updateUI, longer than UI_STAT_AGE_S after the last: it stats anew."""
    import types

    from nuke_hdmatt.nuke import generated
    shift = getattr(generated.time, "shift", 0.0) + generated.UI_STAT_AGE_S + 1
    monkeypatch.setattr(generated, "time", types.SimpleNamespace(
        monotonic=lambda: time.monotonic() + shift, shift=shift))
    nuke._run_update_ui()


def test_4_5_range_follows_generated_frames_and_stale_results_show(shot, tmp_path, capsys,
                                                                    monkeypatch):
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    # handles: 0-3 around the script's 1-2 (the plate Reads hold their ends)
    assert hd().generate(node, "0-3") is True
    assert (node["range_first"].value(), node["range_last"].value()) == (0, 3)
    assert node["label"].value() == "0-3"
    nuke.GUI = True
    w = nuke.nodes.Write(file=str(tmp_path / "h.####.exr"), channels="rgba", raw=True,
                         datatype="32 bit float")
    w.setInput(0, node)
    nuke.execute(w, 0, 3)
    for f in (0, 3):  # the handle frames show their alpha, not black
        assert np.array_equal(read_exr(tmp_path / f"h.{f:04d}.exr")["A"],
                              read_exr(knobs().alpha_sequence(node).path(f))["A"])
    nuke.delete(w)
    from nuke_hdmatt.nuke import generated
    frozen = time.monotonic()  # the clock stands: no stat older than UI_STAT_AGE_S however slow
    monkeypatch.setattr(generated, "time", types.SimpleNamespace(monotonic=lambda: frozen))
    assert "stale" not in hd().update_status(node, [0, 1, 2, 3])

    # the plate changes on disk: the next UI update marks the node stale
    time.sleep(0.01)
    write_exr(src / "plate.0002.exr", plate_pixels(7), ("R", "G", "B"))
    os.utime(src / "plate.0002.exr", ns=(time.time_ns(), time.time_ns() + 10**9))
    nuke._run_update_ui()  # at once: the stats of a moment ago stand (no file server trips)
    assert "stale" not in node["status"].value()
    update_ui_later(nuke, monkeypatch)
    assert "stale: plate input changed since Generate" in node["status"].value()
    assert node["label"].value() == "0-3 stale"
    # a knob change is stale too, and a render (terminal mode loading the script) warns
    node["band"].setValue(7)  # unused with a trimap, but a setting all the same
    node["k"].setValue(2)
    nuke.GUI = False
    capsys.readouterr()
    nuke._run_callback(node["onCreate"].value(), node)
    err = capsys.readouterr().err
    assert "HDMatt: warning: HDMatt1: alpha is stale (plate input, settings changed" in err


def test_4_5_a_frame_generated_again_alone_keeps_the_others_checked(shot):
    """Generate all, then the current frame again: the record still holds every frame, each
    compared with the files that made it (one digest over the frame list lost the others)."""
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1-2") is True
    assert hd().generate(node, "1") is True
    assert hd().stale_reasons(node) == []
    time.sleep(0.01)
    write_exr(src / "plate.0002.exr", plate_pixels(7), ("R", "G", "B"))
    os.utime(src / "plate.0002.exr", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert hd().stale_reasons(node) == ["plate input"]
    assert hd().generate(node, "2") is True  # the changed frame made again: nothing stale
    assert hd().stale_reasons(node) == []
    assert "2 cached" in hd().update_status(node, [1, 2])


def test_4_6_proxy_mode_checks_the_full_resolution_files(shot):
    """Generate renders at full resolution (proxy off); the stale check reads the same files
    in proxy mode too, where ``nuke.filename`` names a Read's proxy file."""
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    for f in (1, 2):
        write_exr(src / f"plate_proxy.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
    plate["proxy"].setValue(str(src / "plate_proxy.####.exr"))
    nuke.root()["proxy"].setValue(True)
    assert hd().generate(node, "1-2") is True
    assert nuke.root()["proxy"].value() is True  # given back after the render
    assert hd().stale_reasons(node) == []
    nuke.root()["proxy"].setValue(False)
    assert hd().stale_reasons(node) == []  # toggling proxy changes nothing that was rendered
    nuke.root()["proxy"].setValue(True)
    later = time.time_ns() + 10**9
    os.utime(src / "plate_proxy.0002.exr", ns=(later, later))
    assert hd().stale_reasons(node) == []  # a new proxy: not what the alpha was made from
    os.utime(src / "plate.0002.exr", ns=(later, later))
    assert hd().stale_reasons(node) == ["plate input"]  # the full-resolution file changed


def test_4_7_exposure_flip_and_snap_changes_show_stale_at_once(shot):
    """All decide the alpha: the knob change itself refreshes the status (no wait for an
    idle updateUI)."""
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1") is True
    for knob, value in (("exposure", "-1"), ("flip", False), ("snap", 0.0)):
        hd().update_status(node, [1])
        assert "stale" not in node["status"].value()
        old = node[knob].value()
        node[knob].setValue(value)
        nuke._fire_knob_changed(node, knob)
        assert "stale: settings changed since Generate" in node["status"].value(), knob
        node[knob].setValue(old)


def test_4_8_frames_a_later_generate_did_not_make_again_stay_stale(shot):
    """Generate 1-2, change a setting, Generate frame 1: frame 2's alpha is the old
    setting's, and renders use it; the node says so until frame 2 is made again."""
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1-2") is True
    node["snap"].setValue(0.0)
    assert hd().generate(node, "1") is True
    assert "stale: settings changed since Generate" in hd().update_status(node, [1, 2])
    assert node["label"].value() == "1-2 stale"
    assert hd().generate(node, "2") is True
    assert "stale" not in hd().update_status(node, [1, 2])


def _touch(path, seconds_later=1):
    os.utime(path, ns=(time.time_ns(), time.time_ns() + seconds_later * 10**9))


def test_4_9_the_stale_check_follows_frames_through_time_nodes(shot):
    """A TimeOffset slips the plate a frame: frame 3's alpha comes from plate frame 2, so a
    new plate frame 2 makes it stale (the check stat'ed plate frame 3, which does not exist,
    and said nothing)."""
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    slip = nuke.nodes.TimeOffset(time_offset=1)
    slip.setInput(0, plate)
    node.setInput(0, slip)
    assert hd().generate(node, "3") is True
    _touch(src / "plate.0001.exr")                  # not what frame 3 shows
    assert "stale" not in hd().update_status(node, [3])
    _touch(src / "plate.0002.exr")
    assert "stale: plate input changed since Generate" in hd().update_status(node, [3])


def test_4_9_held_and_retimed_plates_count_the_frames_they_read(shot):
    from nuke_hdmatt.nuke.generated import graph_digests
    nuke, node, plate, src, _ = shot
    hold = nuke.nodes.FrameHold(firstFrame=1)
    hold.setInput(0, plate)
    before = graph_digests(hold, [1, 2])[1]
    _touch(src / "plate.0001.exr")                  # every frame of the hold shows frame 1
    after = graph_digests(hold, [1, 2])[1]
    assert after[1] != before[1] and after[2] != before[2]
    # a Read holds its last frame after its range
    assert graph_digests(plate, [2, 5])[1][5] == graph_digests(plate, [2, 5])[1][2]


def test_4_9_a_record_of_the_version_before_stays_current_and_is_brought_up_to_date(shot):
    """Records written before time nodes were followed digest each frame's own file: a
    handle frame past the Reads' range (the default range is the script's) must not turn
    stale by the upgrade, and a later Generate rewrites the record in today's meaning."""
    import json

    from nuke_hdmatt.nuke import generated
    from nuke_hdmatt.nuke import node as hdmatt_node
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1-3") is True       # the Reads hold frame 2 at frame 3
    rec = json.loads(node["generated"].value())
    assert rec["files_version"] == generated.FILES_VERSION
    old = hdmatt_node.fingerprint(node, [1, 2, 3], follow_time=False)["files"]
    assert old["3"] != rec["files"]["3"]             # the two meanings differ there
    legacy = {k: v for k, v in rec.items() if k != "files_version"}
    node["generated"].setValue(json.dumps({**legacy, "files": old}))
    assert hd().stale_reasons(node) == []
    assert hd().generate(node, "1") is True          # a partial Generate upgrades the rest
    rec = json.loads(node["generated"].value())
    assert rec["files_version"] == generated.FILES_VERSION and rec["frames"] == "1-3"
    assert rec["files"]["3"] == hdmatt_node.fingerprint(node, [3])["files"]["3"]
    assert hd().stale_reasons(node) == []
    _touch(src / "plate.0002.exr")                   # what frame 3 shows, held
    assert hd().stale_reasons(node) == ["plate input"]


def test_4_9_groups_nested_retimes_and_many_paths_through_time_nodes(shot, monkeypatch):
    from nuke_hdmatt.nuke import generated
    from nuke_hdmatt.nuke.generated import graph_digests
    nuke, node, plate, src, _ = shot
    # a Read inside a group, slipped there: only the frame it shows counts
    group = nuke.nodes.Group()
    with group:
        inner = nuke.nodes.Read(file=str(src / "plate.####.exr"), first=1, last=2)
        slip = nuke.nodes.TimeOffset(time_offset=1)
        slip.setInput(0, inner)
        nuke.nodes.Output().setInput(0, slip)
    before = graph_digests(group, [2])[1]
    _touch(src / "plate.0002.exr")                   # not what frame 2 shows
    assert graph_digests(group, [2])[1] == before
    _touch(src / "plate.0001.exr", 2)
    assert graph_digests(group, [2])[1] != before
    # a group that retimes inside, one or two groups deep, is not followed: every frame of
    # the Reads above it counts
    for depth in (1, 2):
        outer = inside = nuke.nodes.Group()
        for _ in range(depth - 1):
            with inside:
                inside = nuke.nodes.Group()
        with inside:
            nuke.nodes.TimeOffset(time_offset=1)
        outer.setInput(0, plate)
        before = graph_digests(outer, [1])[1]
        _touch(src / "plate.0002.exr", 2 + depth)
        assert graph_digests(outer, [1])[1] != before, depth
    # a ladder of 12 offsets, each merged back over its input: 4096 paths, walked boundedly
    calls = []
    real = generated._stat
    monkeypatch.setattr(generated, "_stat", lambda *a: calls.append(a) or real(*a))
    top = plate
    for k in range(12):
        slip = nuke.nodes.TimeOffset(time_offset=2 ** k)
        slip.setInput(0, top)
        merge = nuke.nodes.Copy()
        merge.setInput(0, top)
        merge.setInput(1, slip)
        top = merge
    graph_digests(top, list(range(1, 11)))
    assert len(calls) < 500, len(calls)


def test_5_changed_weights_mark_the_node_stale(shot, tmp_path, monkeypatch):
    from nuke_hdmatt.engine.weights import file_sha256
    nuke, node, plate, src, _ = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes((ROOT / "nuke_hdmatt" / "model" / "hdmatt.safetensors").read_bytes())
    monkeypatch.setenv("HDMATT_WEIGHTS", str(mine))  # the engine inherits Nuke's environment
    assert hd().generate(node, "1") is True
    # the record holds the weights the engine reported in its JSON log
    rec = hd()._record(node)
    assert rec["weights"] == {"path": str(mine), "sha256": file_sha256(mine)}
    assert "stale" not in hd().update_status(node, [1])
    # other weights: $HDMATT_WEIGHTS names another file
    other = tmp_path / "other.safetensors"
    other.write_bytes(mine.read_bytes() + b" ")
    monkeypatch.setenv("HDMATT_WEIGHTS", str(other))
    nuke._run_update_ui()
    assert "stale: weights changed since Generate" in node["status"].value()
    assert node["label"].value() == "1 stale"
    # the same file again: fresh; then the file itself is replaced
    monkeypatch.setenv("HDMATT_WEIGHTS", str(mine))
    nuke._run_update_ui()
    assert "stale" not in node["status"].value()
    mine.write_bytes(other.read_bytes())
    os.utime(mine, ns=(time.time_ns(), time.time_ns() + 10**9))
    nuke._run_update_ui()
    assert node["label"].value() == "1 stale"


# ---------------------------------------------------------------- 6. output channel without Python


def test_6_output_channel_is_saved_in_the_script_and_needs_no_python(fake_nuke, tmp_path,
                                                                     monkeypatch, capsys):
    nuke = fake_nuke
    script = tmp_path / "shot.nk"
    for f in (1, 2):
        write_exr(tmp_path / f"plate.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
    nuke.root()["name"].setValue(str(script))
    nuke.root()["format"].setValue(f"{W} {H} 0 0 {W} {H} 1 tiny")
    # a render node without nuke_hdmatt: every import of the plugin's Python fails
    monkeypatch.setitem(sys.modules, "nuke_hdmatt.nuke.node", None)
    nuke.scriptReadText(f"""Read {{
 inputs 0
 file {tmp_path}/plate.####.exr
 first 1
 last 2
 name ReadPlate
}}
HDMatt {{
 inputs 1
 output_channel hdmatt.alpha
 name HDMatt1
}}
""")
    err = capsys.readouterr().err
    assert "Error: import of nuke_hdmatt.nuke.node halted" in err  # onCreate failed, printed
    node = nuke.toNode("HDMatt1")
    assert node.node("copy_alpha")["to0"].value() == "hdmatt.alpha"
    seq = FrameSeq(str(tmp_path / "hdmatt" / "shot" / "HDMatt1" / "alpha.####.exr"))
    os.makedirs(os.path.dirname(seq.path(1)))
    for f in (1, 2):
        write_exr(seq.path(f), np.full((H, W, 1), 0.5, np.float32), ("A",))
    w = nuke.nodes.Write(file=str(tmp_path / "out.####.exr"), channels="all", raw=True,
                         datatype="32 bit float")
    w.setInput(0, node)
    nuke.execute(w, 1, 2)
    out = read_exr(tmp_path / "out.0001.exr")
    assert np.all(out["hdmatt.A"] == 0.5) and "A" not in out


def FrameSeq(pattern):
    from nuke_hdmatt.sequence import FrameSequence
    return FrameSequence(pattern)


# ---------------------------------------------------------------- 7. alpha paths


def test_7_alpha_path_follows_script_and_node_names(shot):
    nuke, node, plate, src, tmp_path = shot
    base = tmp_path / "hdmatt"
    assert knobs().alpha_pattern(node) == f"{base}/shot010/HDMatt1/alpha.%04d.exr"
    node.setName("Hero")
    assert knobs().alpha_pattern(node) == f"{base}/shot010/Hero/alpha.%04d.exr"
    nuke.root()["name"].setValue(str(tmp_path / "shot010_v002.nk"))  # versioned up
    assert knobs().alpha_pattern(node) == f"{base}/shot010_v002/Hero/alpha.%04d.exr"
    copy = nuke.createNode("HDMatt")  # a copy of the default gets its own folder
    assert knobs().alpha_pattern(copy) == f"{base}/shot010_v002/HDMatt1/alpha.%04d.exr"
    # an explicit path shared by a copy: Generate refuses instead of overwriting
    shared = str(tmp_path / "alpha" / "a.####.exr")
    node["alpha_file"].getLinkedKnob().setValue(shared)
    copy["alpha_file"].getLinkedKnob().setValue(shared)
    copy.setInput(0, plate)
    copy.setInput(1, node.input(1))
    assert hd().generate(copy) is False
    assert "HDMatt1.alpha_file: " in copy["status"].value() and "also Hero's" in copy["status"].value()
    # the same files however the path is spelt (%04d for ####, a doubled slash)
    copy["alpha_file"].getLinkedKnob().setValue(shared.replace("/alpha/", "//alpha/")
                                                .replace("####", "%04d"))
    assert hd().generate(copy) is False and "also Hero's" in copy["status"].value()
    # a node whose alpha sequence holds another's frames never shows them as its own
    copy["alpha_file"].getLinkedKnob().setValue(str(tmp_path / "elsewhere" / "a.####.exr"))
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1") is True
    copy["alpha_file"].getLinkedKnob().setValue(shared)
    line = hd().update_status(copy)
    assert line.startswith("error: HDMatt1.alpha_file is also Hero's") and "cached" not in line
    assert copy["label"].value() == "shared alpha"


def test_7_unsaved_script_is_refused(shot):
    nuke, node, plate, src, tmp_path = shot
    nuke.root()["name"].setValue("")
    assert hd().generate(node) is False
    assert node["status"].value() == ("error: HDMatt1: save the script first: the alpha sequence "
                                      "goes beside it (or set alpha sequence to an absolute path)")
    assert nuke._renders == []


def test_7_farm_refuses_an_alpha_sequence_in_a_temp_folder(tmp_path):
    from nuke_hdmatt.errors import UsageError
    from nuke_hdmatt.farm.nuke_job import check_script
    script = tmp_path / "shot.nk"
    script.write_text("HDMatt {\n inputs 0\n alpha_file /var/tmp/hdmatt/alpha.####.exr\n"
                      " name HDMatt1\n}\nWrite {\n name Write1\n}\n")
    with pytest.raises(UsageError, match="HDMatt1.alpha_file /var/tmp/hdmatt/alpha.####.exr is "
                                         "in a temp folder"):
        check_script(str(script), "HDMatt1", "Write1")
    script.write_text(script.read_text().replace("/var/tmp/hdmatt", str(tmp_path / "alpha")))
    check_script(str(script), "HDMatt1", "Write1")  # beside the script: shared with it


# ---------------------------------------------------------------- 8. TCL and $env


def test_8_knobs_are_evaluated_where_nuke_users_expect(shot, monkeypatch):
    nuke, node, plate, src, tmp_path = shot
    monkeypatch.setenv("SHOW_CACHE", str(tmp_path / "showcache"))
    monkeypatch.setenv("SHOT_SPACE", "ACEScg")
    node["cache"].setValue("$env(SHOW_CACHE)/hdmatt")
    node["alpha_file"].getLinkedKnob().setValue(
        "[getenv SHOW_CACHE]/alphas/[value parent.name]/a.####.exr")
    node["plate_colorspace"].setValue("$env(SHOT_SPACE)")
    node["frames"].setValue("[value root.first_frame]-[value root.last_frame]")
    frames = hd().requested_frames(node)
    job = knobs().matte_job(node, {"plate": "p", "trimap": "t", "matte": None}, frames)
    assert frames == [1, 2]
    assert job.cache == f"{tmp_path}/showcache/hdmatt"
    assert job.output == f"{tmp_path}/showcache/alphas/HDMatt1/a.%04d.exr"
    assert job.plate_colorspace == "ACEScg"
    assert node["cache"].value() == "$env(SHOW_CACHE)/hdmatt"  # .value() stays raw


# ---------------------------------------------------------------- 9. bbox


def test_9_trimap_with_a_smaller_bbox_is_exported_over_the_plate_bbox(shot):
    nuke, node, plate, src, tmp_path = shot
    trimap = node.input(1)
    crop = nuke.nodes.Crop(box="0 0 40 48")  # a Roto-like bbox: x 0-40 of 48
    crop.setInput(0, trimap)
    node.setInput(1, crop)
    work = tmp_path / "w"
    work.mkdir()
    paths = hd().export_inputs(node, [1], str(work))
    plate_win, _ = data_window(work / "plate.0001.exr")
    tri_win, _ = data_window(Path(paths["trimap"].replace("####", "0001")))
    assert tri_win == plate_win == (0, 0, W, H)
    tri = read_exr(Path(paths["trimap"].replace("####", "0001")))["A"]
    assert not tri[:, 40:].any() and tri[:, 30:40].min() == 1  # outside the Roto: background
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1") is True, node["status"].value()
    written = read_exr(knobs().alpha_sequence(node).path(1))
    assert list(written) == ["A"]  # the alpha alone: the gizmo has the plate already
    alpha = written["A"]
    assert not alpha[:, 40:].any() and np.all(alpha[:, 30:40] == 1)


def test_double_write_uses_the_bbox_as_data_window(fake_nuke, tmp_path):
    nuke = fake_nuke
    nuke.root()["format"].setValue("16 8 0 0 16 8 1 tiny")
    src = tmp_path / "src.0001.exr"
    write_exr(src, np.ones((8, 16, 4), np.float32), ("R", "G", "B", "A"))
    read = nuke.nodes.Read(file=str(tmp_path / "src.####.exr"))
    crop = nuke.nodes.Crop(box="2 1 10 5")
    crop.setInput(0, read)
    w = nuke.nodes.Write(file=str(tmp_path / "o.####.exr"), channels="rgba", raw=True)
    w.setInput(0, crop)
    nuke.execute(w, 1, 1)
    win, spec = data_window(tmp_path / "o.0001.exr")
    # bbox y 1-5 (up) of 8 rows = file rows 3-7 (down)
    assert win == (2, 3, 8, 4) and (spec.full_width, spec.full_height) == (16, 8)


# ---------------------------------------------------------------- 10. plate colour space


def test_10_plate_is_tagged_with_the_working_space_and_the_file_space_refused(shot):
    nuke, node, plate, src, tmp_path = shot
    assert "arriving" in node["plate_colorspace"].tooltip()
    colour = knobs().plate_colour(node)
    assert colour.colorspace == "ACEScg"
    work = tmp_path / "w"
    work.mkdir()
    hd().export_inputs(node, [1], str(work), plate_space=colour.colorspace)
    _, spec = data_window(work / "plate.0001.exr")
    # OpenImageIO may store the interop id of the name
    assert spec.getattribute("oiio:ColorSpace") in ("ACEScg", "lin_ap1_scene")
    # the compositor sets the knob to the file's colour space: that would convert twice
    plate["colorspace"].setValue("sRGB - Texture")
    node["plate_colorspace"].setValue("sRGB - Texture")
    assert hd().generate(node) is False
    assert node["status"].value().startswith(
        "error: HDMatt1.plate_colorspace: 'sRGB - Texture' is the plate Read's file colour space")
    plate["raw"].setValue(True)  # a raw Read delivers the file's pixels: then it is right
    assert knobs().plate_colour(node).colorspace == "sRGB - Texture"


# ---------------------------------------------------------------- 11. OCIO for the farm


def test_11_builtin_configs_become_uris_others_are_copied(tmp_path):
    from nuke_hdmatt.nuke.colour_settings import copy_bundled_config, resolve_colour
    nuke_dir = tmp_path / "Nuke15.1v1"
    for name in ("fn-nuke_cg-config-v2.1.0_aces-v1.3_ocio-v2.3", "nuke-default"):
        cfg = nuke_dir / "plugins" / "OCIOConfigs" / "configs" / name / "config.ocio"
        (cfg.parent / "luts").mkdir(parents=True)
        cfg.write_text("ocio_profile_version: 1\n")
        (cfg.parent / "luts" / "srgb.spi1d").write_text("lut\n")
    exe = str(nuke_dir / "Nuke15.1")
    cg = resolve_colour({"colorManagement": "OCIO", "workingSpaceLUT": "ACEScg",
                         "OCIO_config": "fn-nuke_cg-config-v2.1.0_aces-v1.3_ocio-v2.3"}, exe, {})
    assert cg.config == "ocio://cg-config-v2.1.0_aces-v1.3_ocio-v2.3"  # not the install's file
    legacy = resolve_colour({"colorManagement": "Nuke"}, exe, {})
    assert legacy.bundled and legacy.config.startswith(str(nuke_dir))
    job = tmp_path / "job"
    copied = copy_bundled_config(legacy, str(job))
    assert copied.config == f"{job}/ocio/nuke-default/config.ocio"
    assert (job / "ocio" / "nuke-default" / "luts" / "srgb.spi1d").read_text() == "lut\n"
    assert copy_bundled_config(legacy, str(job)) == copied  # a second chunk reuses it
    assert copy_bundled_config(cg, str(job)) is cg


def test_11_cache_is_keyed_on_config_content_not_path(tmp_path):
    import PyOpenColorIO as OCIO

    from cli_fixtures import FAST, exr_sequence, hdmatt_env
    text = OCIO.Config.CreateFromFile("ocio://cg-config-v2.1.0_aces-v1.3_ocio-v2.3").serialize()
    configs = []
    for where in ("workstation/Nuke/plugins", "farm/job/ocio"):
        cfg = tmp_path / where / "config.ocio"
        cfg.parent.mkdir(parents=True)
        cfg.write_text(text)
        configs.append(cfg)
    plate, trimap = exr_sequence(tmp_path / "in", [1], size=32)
    outs = []
    for i, cfg in enumerate(configs):
        r = subprocess.run([sys.executable, "-m", "nuke_hdmatt.cli", "matte", plate, trimap,
                            "-o", f"out{i}/a.####.exr", "--frames", "1", *FAST, "--ocio",
                            str(cfg), "--plate-colorspace", "ACEScg", "--cache",
                            str(tmp_path / "cache")],
                           cwd=tmp_path, env=hdmatt_env(tmp_path), capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stderr)
    assert "from cache" in outs[1] and "from cache" not in outs[0]


# ---------------------------------------------------------------- 12. temporary Writes


def test_12_temporary_writes_ignore_studio_defaults_callbacks_and_proxy(shot):
    nuke, node, plate, src, tmp_path = shot
    calls = []
    nuke.knobDefault("Write.compression", "DWAA")
    nuke.knobDefault("Write.beforeRender", "raise RuntimeError('studio publish check')")
    nuke.addBeforeRender(lambda: calls.append(nuke.thisNode().name()), nodeClass="Write")
    nuke.root()["proxy"].setValue(True)
    work = tmp_path / "w"
    work.mkdir()
    hd().export_inputs(node, [1], str(work))
    assert calls == []
    _, spec = data_window(work / "plate.0001.exr")
    assert spec.getattribute("compression") == "zips"  # lossless, not the studio's DWAA
    assert nuke.root()["proxy"].value() is True  # restored
    # stereo: every view written
    nuke.root()["views"].setValue("left right")
    (tmp_path / "s").mkdir()
    paths = hd().export_inputs(node, [1], str(tmp_path / "s"))
    assert "%V" in paths["plate"]
    assert sorted(os.listdir(tmp_path / "s")) == ["plate.left.0001.exr", "plate.right.0001.exr",
                                                  "trimap.left.0001.exr", "trimap.right.0001.exr"]
    assert hd().generate(node) is False  # one alpha per view needs %V in the alpha sequence
    assert "a stereo script needs %V" in node["status"].value()
    # a studio Write made outside the plugin still gets its callback
    w = nuke.nodes.Write(file=str(tmp_path / "x.####.exr"), raw=True, beforeRender="")
    nuke.root()["proxy"].setValue(False)
    nuke.root()["views"].setValue("")
    w.setInput(0, plate)
    nuke.execute(w, 1, 1)
    assert calls == [w.name()]


@pytest.mark.parametrize("gui", [False, True])
def test_12_stereo_engine_runs_per_view_and_the_read_reads_per_view(shot, gui, monkeypatch):
    nuke, node, plate, src, tmp_path = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    nuke.root()["views"].setValue("left right")
    for view, seed in (("left", 1), ("right", 9)):
        write_exr(src / f"plate.{view}.0001.exr", plate_pixels(seed), ("R", "G", "B"))
    plate["file"].setValue(str(src / "plate.%V.####.exr"))
    alpha = tmp_path / "out" / "alpha.%V.####.exr"
    node["alpha_file"].getLinkedKnob().setValue(str(alpha))
    nuke.GUI = gui
    assert hd().generate(node, "1") is True
    if gui:  # the views are read on the main thread: the worker may not ask Nuke
        assert finish_in_gui(nuke, node).ok
        nuke.GUI = False
    made = {}
    for view in ("left", "right"):
        path = tmp_path / "out" / f"alpha.{view}.0001.exr"
        _, spec = data_window(path)
        # one engine call per view, each on that view's exported plate
        assert f"/plate.{view}.0001.exr" in spec.getattribute("hdmatt:plate")
        made[view] = read_exr(path)["A"]
    assert not np.array_equal(made["left"], made["right"])
    assert "1 cached, 0 missing" in node["status"].value()
    # the node's Read shows each view's alpha in a render of both views
    w = nuke.nodes.Write(file=str(tmp_path / "comp.%V.####.exr"), channels="rgba", raw=True,
                         datatype="32 bit float")
    w.setInput(0, node)
    nuke.executeMultiple([w], [(1, 1, 1)], ["left", "right"])
    for view in ("left", "right"):
        assert np.array_equal(read_exr(tmp_path / f"comp.{view}.0001.exr")["A"], made[view])
    nuke.delete(w)
    # a change to one view's plate is a stale plate input
    assert "stale" not in hd().update_status(node, [1])
    write_exr(src / "plate.right.0001.exr", plate_pixels(3), ("R", "G", "B"))
    os.utime(src / "plate.right.0001.exr", ns=(time.time_ns(), time.time_ns() + 10**9))
    update_ui_later(nuke, monkeypatch)
    assert "stale: plate input changed since Generate" in node["status"].value()
    # a frame is there when every view's alpha is; Clear cache clears every view
    (tmp_path / "out" / "alpha.right.0001.exr").unlink()
    assert hd().update_status(node, [1]).startswith("0 cached, 1 missing")
    assert hd().clear_cache(node) == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_12_an_alpha_sequence_named_by_view_in_a_script_of_one_view(shot):
    """Nuke's Read expands %V to "main" in a script of one view: the engine writes there."""
    nuke, node, plate, src, tmp_path = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    node["alpha_file"].getLinkedKnob().setValue(str(tmp_path / "out" / "alpha.%V.####.exr"))
    assert hd().generate(node, "1") is True
    assert sorted(os.listdir(tmp_path / "out")) == ["alpha.main.0001.exr"]
    assert "1 cached, 0 missing" in node["status"].value()


# ---------------------------------------------------------------- 13. farm


GROUP_SCRIPT = """Root {{
 inputs 0
 name {dir}/shot030.nk
 first_frame 1
 last_frame 4
 format "48 48 0 0 48 48 1 tiny"
 colorManagement OCIO
 OCIO_config cg-config-v2.1.0_aces-v1.3_ocio-v2.3
 workingSpaceLUT ACEScg
}}
Group {{
 inputs 0
 name Comp
}}
 Read {{
  inputs 0
  file {dir}/src/trimap.####.exr
  first 1
  last 4
  name ReadTrimap
 }}
 Read {{
  inputs 0
  file {dir}/src/plate.####.exr
  first 1
  last 4
  name ReadPlate
 }}
 HDMatt {{
  inputs 2
  name HDMatt1
 }}
 Output {{
  name Output1
 }}
end_group
Write {{
 file {dir}/comp.####.exr
 name Write1
}}
"""


def test_13_farm_finds_nodes_in_groups_and_chunks_the_prepass(fake_nuke, tmp_path, monkeypatch):
    from nuke_hdmatt.farm import nuke_job
    from nuke_hdmatt.nuke import prepass
    (tmp_path / "src").mkdir()
    for f in range(1, 5):
        write_exr(tmp_path / "src" / f"plate.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
        write_exr(tmp_path / "src" / f"trimap.{f:04d}.exr", trimap_pixels(), ("R", "G", "B", "A"))
    script = tmp_path / "shot030.nk"
    script.write_text(GROUP_SCRIPT.format(dir=tmp_path))
    nuke_job.check_script(str(script), "Comp.HDMatt1", "Write1")
    from nuke_hdmatt.errors import UsageError
    with pytest.raises(UsageError, match=r"no node named 'HDMatt1' \(HDMatt nodes: Comp.HDMatt1\)"):
        nuke_job.check_script(str(script), "HDMatt1", "Write1")
    tpl = nuke_job.job_template(script=str(script), node="Comp.HDMatt1", write="Write1",
                                frames=[1, 2, 3, 4], chunk=2, executable=sys.executable)
    export = tpl["steps"][0]
    assert export["parameterSpace"] == tpl["steps"][1]["parameterSpace"]
    assert export["script"]["actions"]["onRun"]["args"][5] == "--frames={{Task.Param.Frame}}"
    # one chunk of the prepass, in the double, finds the node inside the Group
    work = tmp_path / "work"
    assert prepass.main([str(script), "--node", "Comp.HDMatt1", "--frames", "3-4",
                         "--work", str(work)]) == 0
    assert sorted(p.name for p in work.glob("*.exr")) == \
        ["plate.0003.exr", "plate.0004.exr", "trimap.0003.exr", "trimap.0004.exr"]
    import json
    job = json.loads((work / "matte_job.json").read_text())
    assert job["node"] == "Comp.HDMatt1" and job["views"] == ["main"]
    assert job["job"]["output"] == f"{tmp_path}/hdmatt/shot030/HDMatt1/alpha.%04d.exr"


def test_13_a_farm_chunk_runs_each_view_of_a_stereo_prepass(tmp_path):
    import json

    from nuke_hdmatt.engine.settings import InferenceSettings
    from nuke_hdmatt.farm import nuke_job
    from nuke_hdmatt.nuke.engine_call import JOB_FILE, EngineCall
    for view, seed in (("left", 1), ("right", 9)):
        write_exr(tmp_path / f"plate.{view}.0001.exr", plate_pixels(seed), ("R", "G", "B"))
        write_exr(tmp_path / f"trimap.{view}.0001.exr", trimap_pixels(), ("R", "G", "B", "A"))
    call = EngineCall(plate=str(tmp_path / "plate.%V.####.exr"),
                      trimap=str(tmp_path / "trimap.%V.####.exr"),
                      output=str(tmp_path / "out" / "alpha.%V.####.exr"), frames="1",
                      cache=str(tmp_path / "cache"), settings=InferenceSettings(patch=48, overlap=8))
    (tmp_path / JOB_FILE).write_text(json.dumps({"script": "s.nk", "node": "HDMatt1",
                                                 "job": call.to_dict(), "views": ["left", "right"]}))
    assert nuke_job.main(["--run-chunk", str(tmp_path), "--frames=1"]) == 0
    for view in ("left", "right"):
        _, spec = data_window(tmp_path / "out" / f"alpha.{view}.0001.exr")
        assert f"/plate.{view}.0001.exr" in spec.getattribute("hdmatt:plate")


# ---------------------------------------------------------------- 14. Windows cancel


def test_14_engine_gets_its_own_process_group_on_windows(monkeypatch, tmp_path):
    import subprocess as sp

    from nuke_hdmatt.errors import UsageError
    from nuke_hdmatt.nuke import engine_call
    # CREATE_NEW_PROCESS_GROUP | BELOW_NORMAL_PRIORITY_CLASS
    assert engine_call.popen_options("nt") == {"creationflags": 0x200 | 0x4000}
    assert engine_call.popen_options("posix") == {"start_new_session": True}
    seen = {}
    monkeypatch.setattr(engine_call, "popen_options", lambda: {"creationflags": 0x200})

    def fake_popen(argv, **kwargs):
        seen.update(kwargs)
        raise OSError(2, "No such file or directory")
    monkeypatch.setattr(sp, "Popen", fake_popen)
    with pytest.raises(UsageError, match="cannot start the engine"):
        engine_call.run_engine(["hdmatt"], str(tmp_path / "log"), 1)
    assert seen["creationflags"] == 0x200


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_14_the_engine_runs_below_nukes_priority(tmp_path):
    """A Generate's engine takes every core; at a lower priority it yields them to Nuke, so
    the UI stays responsive. Its threads start a second later (importing torch), and inherit
    the priority it had then: an engine that looks after a moment sees it."""
    from nuke_hdmatt.nuke import engine_call
    seen = tmp_path / "nice.txt"
    engine = tmp_path / "engine.py"
    engine.write_text("import os, threading, time\n"
                      # until the parent has lowered it (not a guessed sleep: a loaded CI)
                      "end = time.monotonic() + 60\n"
                      f"while os.getpriority(os.PRIO_PROCESS, 0) < {engine_call.NICENESS} "
                      "and time.monotonic() < end:\n"
                      "    time.sleep(0.01)\n"
                      "out = []\n"
                      "t = threading.Thread(target=lambda: out.append(os.getpriority(os.PRIO_PROCESS, 0)))\n"
                      "t.start(); t.join()\n"
                      f"open({str(seen)!r}, 'w').write(str(out[0]))\n")
    result = engine_call.run_engine([sys.executable, str(engine)], str(tmp_path / "log"), 1)
    assert result.returncode == 0, result.output_tail
    want = max(os.getpriority(os.PRIO_PROCESS, 0), engine_call.NICENESS)
    assert int(seen.read_text()) == want


# ---------------------------------------------------------------- 15. install


def _install():
    import importlib.util
    spec = importlib.util.spec_from_file_location("hdmatt_install14", ROOT / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_15_symlinked_init_py_is_edited_in_place(tmp_path):
    install = _install()
    home = tmp_path / "home"
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (home / ".nuke").mkdir(parents=True)
    target = dotfiles / "nuke_init.py"
    target.write_text("import nuke\n")
    (home / ".nuke" / "init.py").symlink_to(target)
    engine = tmp_path / "hdmatt"
    install.add_nuke_hooks(home, install.GIZMO_DIR, engine, engine)
    assert (home / ".nuke" / "init.py").is_symlink()
    assert install.BLOCK_START in target.read_text()
    install.remove_nuke_hooks(home)
    assert (home / ".nuke" / "init.py").is_symlink() and target.read_text() == "import nuke\n"


def test_15_setup_lines_for_each_shell(tmp_path):
    install = _install()
    g, e = Path("C:/hdmatt/gizmos"), Path("C:/hdmatt/.venv/Scripts/hdmatt.exe")
    ps = install.nuke_path_lines(g, e, "powershell")
    assert ps.splitlines()[1] == f"$env:HDMATT_ENGINE = '{e}'"     # literal: no $ expanded
    assert ps.startswith(f"$env:NUKE_PATH = '{g}'")
    cmd = install.nuke_path_lines(g, e, "cmd")
    assert f'set "NUKE_PATH={g};%NUKE_PATH%"' in cmd and cmd.endswith(f'set "HDMATT_ENGINE={e}"\n')
    sh = install.nuke_path_lines(Path("/g"), Path("/e"), "sh")
    r = subprocess.run(["sh", "-c", sh + 'printf "%s|%s" "$NUKE_PATH" "$HDMATT_ENGINE"'],
                       capture_output=True, text=True, env={"NUKE_PATH": "/studio"})
    assert r.stdout == "/g:/studio|/e"


def test_15_gizmo_init_does_not_put_the_checkout_on_sys_path():
    code = (
        "import sys, types, runpy\n"
        "nuke = types.ModuleType('nuke'); nuke.pluginPath = lambda: []\n"
        "sys.modules['nuke'] = nuke\n"
        f"before = list(sys.path)\n"
        f"runpy.run_path({str(ROOT / 'gizmos' / 'init.py')!r})\n"
        "import nuke_hdmatt.nuke.nk_script\n"
        "print(nuke_hdmatt.__file__)\n"
        f"print({str(ROOT)!r} in sys.path, sys.path == before)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       timeout=60, cwd="/", env=env)
    assert r.returncode == 0, r.stderr
    path, flags = r.stdout.splitlines()
    assert path == str(ROOT / "nuke_hdmatt" / "__init__.py")
    assert flags == "False True"


# ---------------------------------------------------------------- 16. matte + trimap


def test_16_matte_and_trimap_together_are_refused(shot):
    nuke, node, plate, src, tmp_path = shot
    node.setInput(2, node.input(1))
    assert hd().generate(node) is False
    assert node["status"].value() == (
        "error: HDMatt1: both a trimap and a matte are connected; the matte only derives a "
        "trimap when there is none: disconnect one")
    assert nuke._renders == []


def test_11_prepass_copies_a_bundled_config_beside_the_job(fake_nuke, tmp_path, monkeypatch):
    from nuke_hdmatt.nuke import prepass
    nuke_dir = tmp_path / "Nuke13.2v8"
    cfg = nuke_dir / "plugins" / "OCIOConfigs" / "configs" / "nuke-default" / "config.ocio"
    (cfg.parent / "luts").mkdir(parents=True)
    cfg.write_text("ocio_profile_version: 1\n")
    (cfg.parent / "luts" / "srgb.spi1d").write_text("lut\n")
    monkeypatch.setattr(fake_nuke, "EXE_PATH", str(nuke_dir / "Nuke13.2"))
    (tmp_path / "src").mkdir()
    for f in (1, 2):
        write_exr(tmp_path / "src" / f"plate.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
        write_exr(tmp_path / "src" / f"trimap.{f:04d}.exr", trimap_pixels(), ("R", "G", "B", "A"))
    script = tmp_path / "shot030.nk"
    script.write_text(GROUP_SCRIPT.format(dir=tmp_path).replace(
        " colorManagement OCIO\n OCIO_config cg-config-v2.1.0_aces-v1.3_ocio-v2.3\n"
        " workingSpaceLUT ACEScg\n", " colorManagement Nuke\n workingSpaceLUT linear\n"))
    work = tmp_path / "work"
    assert prepass.main([str(script), "--node", "Comp.HDMatt1", "--frames", "1",
                         "--work", str(work)]) == 0
    import json
    job = json.loads((work / "matte_job.json").read_text())["job"]
    assert job["ocio"] == f"{work}/ocio/nuke-default/config.ocio"  # not the Nuke install
    assert (work / "ocio" / "nuke-default" / "luts" / "srgb.spi1d").exists()
    assert job["plate_colorspace"] == "linear"


# ---------------------------------------------------------------- 16. errors of any kind


def test_16_an_error_that_is_no_hdmatt_error_is_still_reported_on_the_node(shot, monkeypatch):
    """A full temp folder, a knob's bad TCL (Nuke raises RuntimeError), a failure while the
    verdict is recorded, a frame that cannot be deleted: each on the status line, never a
    traceback in the Script Editor and a status that still says what it said."""
    import tempfile
    nuke, node, plate, src, tmp_path = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkdtemp", full)
        assert hd().generate(node, "1") is False
    assert node["status"].value() == "error: OSError: [Errno 28] No space left on device"
    assert node["label"].value() == "failed"

    def lost(*args, **kwargs):
        raise RuntimeError("alpha_file: can't read \"env(SHOT)\": no such variable")
    with monkeypatch.context() as m:
        m.setattr(hd(), "_remember", lost)
        assert hd().generate(node, "1") is False      # the engine ran; recording it failed
    assert node["status"].value() == "error: alpha_file: can't read \"env(SHOT)\": no such variable"
    with monkeypatch.context() as m:
        m.setattr(hd(), "requested_frames", lost)
        assert hd().update_status(node).startswith("alpha_file: can't read")
    assert node["status"].value().startswith("error: alpha_file")

    assert hd().generate(node, "1") is True

    def denied(path):
        raise PermissionError(13, "Permission denied")
    with monkeypatch.context() as m:
        m.setattr(hd().os, "remove", denied)
        assert hd().clear_cache(node) == 0
    assert node["status"].value() == ("error: could not delete 1 of 1 alpha frames "
                                      "(alpha.0001.exr: Permission denied)")


def test_16_a_knobs_tcl_failing_after_a_generate_is_an_error_status_not_a_traceback(
        shot, monkeypatch):
    """The stale check evaluates every knob: an unset $env in the cache folder raised
    Nuke's RuntimeError from every idle update (and a render's onCreate)."""
    nuke, node, plate, src, tmp_path = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1") is True
    monkeypatch.delenv("SHOW_CACHE", raising=False)
    node["cache"].setValue("$env(SHOW_CACHE)/hdmatt")
    line = hd().update_status(node)
    assert "SHOW_CACHE" in line and node["status"].value().startswith("error: ")
    monkeypatch.setattr(nuke, "GUI", False)
    monkeypatch.setattr(nuke, "thisNode", lambda: node)
    hd().on_create()                                   # a render loading the script


def test_4_each_frame_a_generate_lands_is_in_the_reads_range_at_once(shot):
    """The worker reloads the inner Read as each frame lands: its range follows, or a first
    Generate's frames stayed black (range 0-0) until the whole run ended."""
    nuke, node, plate, src, tmp_path = shot
    node["patch"].setValue(48)
    node["overlap"].setValue(8)
    assert hd().generate(node, "1-2") is True
    for knob in ("range_first", "range_last"):
        node[knob].setValue(0)
    hd()._reload(node)                                 # what frame_done runs on the main thread
    assert (node["range_first"].value(), node["range_last"].value()) == (1, 2)
