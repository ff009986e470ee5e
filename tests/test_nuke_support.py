"""Nuke-side modules that run without Nuke: the .nk reader, colour settings, the engine's
JSON-log follower and the engine command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nuke_hdmatt.engine.settings import InferenceSettings
from nuke_hdmatt.errors import ColorSpaceError
from nuke_hdmatt.nuke import nk_script
from nuke_hdmatt.nuke.colour_settings import resolve_colour
from nuke_hdmatt.nuke.engine_call import EngineCall, LogFollower

ROOT = Path(__file__).resolve().parents[1]


def test_gizmo_file_parses_with_expected_structure():
    blocks = nk_script.node_blocks((ROOT / "gizmos" / "HDMatt.gizmo").read_text())
    gizmo = blocks[0][1]
    assert gizmo.cls == "Gizmo" and gizmo.knobs["inputs"] == "3"
    kinds = {uk.name: uk.kind for uk in gizmo.user_knobs}
    # output channel and alpha sequence are links to the inner knobs: saved, no Python
    assert kinds["output_channel"] == 41 and kinds["alpha_file"] == 41
    links = {uk.name: uk.text for uk in gizmo.user_knobs if uk.kind == 41}
    assert links == {"output_channel": "copy_alpha.to0", "alpha_file": "alpha_read.file"}
    assert kinds["generate"] == 22 and kinds["status"] == 26
    assert kinds["cache"] == 2 and kinds["patch"] == 3
    inner = {b.name: b for path, b in blocks if path == ["Gizmo"]}
    assert inner["alpha_read"].knobs["file"].startswith("[file dirname [value root.name]]/hdmatt/")
    assert inner["alpha_read"].knobs["on_error"] == '{"\\$gui ? 1 : 0"}'  # black only in the GUI
    assert inner["copy_alpha"].knobs["bbox"] == "B"
    for uk in gizmo.user_knobs:  # every button's Python compiles
        if uk.kind == 22:
            compile(uk.text, uk.name, "exec")
    compile(gizmo.knobs["onCreate"], "onCreate", "exec")


def test_nk_stack_order_and_escapes():
    text = ('Read {\n inputs 0\n name A\n}\nset NA [stack 0]\nRead {\n inputs 0\n name B\n}\n'
            'push $NA\nMerge2 {\n inputs 2\n label "say \\"hi\\"\\n\\[value x]"\n name M\n}\n')
    st = nk_script.parse(text)
    assert [s.kind for s in st] == ["node", "set", "node", "push", "node"]
    assert st[4].block.knobs["label"] == 'say "hi"\n[value x]'
    with pytest.raises(ValueError, match="line 1"):
        nk_script.parse("Read {\n name A\n")


@pytest.mark.parametrize("root, exe_files, env, want", [
    ({"colorManagement": "OCIO", "OCIO_config": "custom",
      "customOCIOConfigPath": "{cfg}", "workingSpaceLUT": "ACEScg"}, [], {}, ("{cfg}", "ACEScg")),
    ({"colorManagement": "OCIO", "OCIO_config": "aces_1.2", "workingSpaceLUT": "ACES - ACEScg"},
     ["aces_1.2"], {}, ("{nuke}/plugins/OCIOConfigs/configs/aces_1.2/config.ocio", "ACES - ACEScg")),
    ({"colorManagement": "OCIO", "OCIO_config": "fn-nuke_cg-config-v1.0.0_aces-v1.3_ocio-v2.1",
      "workingSpaceLUT": "scene_linear"}, [], {},
     ("ocio://cg-config-v1.0.0_aces-v1.3_ocio-v2.1", "scene_linear")),
    ({"colorManagement": "Nuke"}, ["nuke-default"], {},
     ("{nuke}/plugins/OCIOConfigs/configs/nuke-default/config.ocio", "linear")),
    ({"colorManagement": "OCIO", "OCIO_config": "aces_1.2", "workingSpaceLUT": "ACEScg"}, [],
     {"OCIO": "/studio/config.ocio"}, ("/studio/config.ocio", "ACEScg")),
])
def test_colour_settings(tmp_path, root, exe_files, env, want):
    nuke_dir = tmp_path / "Nuke13.2v8"
    for name in exe_files:
        cfg = nuke_dir / "plugins" / "OCIOConfigs" / "configs" / name / "config.ocio"
        cfg.parent.mkdir(parents=True)
        cfg.write_text("ocio_profile_version: 1\n")
    custom = tmp_path / "show.ocio"
    custom.write_text("ocio_profile_version: 2\n")
    sub = lambda s: s.format(cfg=custom, nuke=nuke_dir)
    root = {k: sub(v) for k, v in root.items()}
    got = resolve_colour(root, str(nuke_dir / "Nuke13.2"), env)
    assert (got.config, got.colorspace) == tuple(sub(w) for w in want)
    assert resolve_colour(root, str(nuke_dir / "Nuke13.2"), env, "sRGB - Texture").colorspace == \
        "sRGB - Texture"


def test_colour_settings_errors_name_the_root_knob(tmp_path):
    with pytest.raises(ColorSpaceError, match="root.customOCIOConfigPath"):
        resolve_colour({"colorManagement": "OCIO", "OCIO_config": "custom",
                        "customOCIOConfigPath": str(tmp_path / "gone.ocio")}, None, {})
    with pytest.raises(ColorSpaceError, match="root.OCIO_config: config 'aces_1.2'"):
        resolve_colour({"colorManagement": "OCIO", "OCIO_config": "aces_1.2"}, "/x/Nuke", {})


def test_log_follower_reads_partial_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    f = log.open("w")
    follower = LogFollower(str(log), 2)
    assert follower.poll() == []  # nothing yet
    f.write(json.dumps({"event": "frame_start", "frame": 1}) + "\n")
    f.write('{"event": "progress", "frame": 1, "done": 1, "total": 4')  # half a line
    f.flush()
    assert follower.poll() == ["frame 1: starting"]
    f.write(', "stage": "patches"}\n')
    f.write(json.dumps({"event": "progress", "frame": 1, "done": 2, "total": 4,
                        "stage": "patches", "eta_s": 4.4}) + "\n")
    f.write(json.dumps({"event": "progress", "frame": 1, "done": 4, "total": 4,
                        "stage": "patches", "eta_s": 0.0}) + "\n")
    f.write(json.dumps({"event": "frame_done", "frame": 1, "cached": True}) + "\n")
    f.write(json.dumps({"event": "frame_failed", "frame": 2, "error": "bad"}) + "\n")
    f.write(json.dumps({"event": "shot_done", "done": [1], "failed": [2]}) + "\n")
    f.flush()
    assert follower.poll() == ["frame 1: patches 1/4", "frame 1: patches 2/4, about 4 s left",
                               "frame 1: patches 4/4", "frame 1: cache hit", "frame 2: failed"]
    assert follower.result.cached == [1] and follower.result.failed == {2: "bad"}
    assert follower.fraction == 1.0


def test_log_follower_s_frame_fraction_only_goes_forward(tmp_path):
    """The matte's steps, then the foreground's tiles (each counting from 0): the engine's
    ``fraction`` spans both; a log without it never moves the bar back either."""
    log = tmp_path / "log.jsonl"
    events = [{"event": "frame_start", "frame": 1},
              {"event": "progress", "frame": 1, "done": 8, "total": 10, "fraction": 0.68},
              {"event": "progress", "frame": 1, "done": 1, "total": 4, "fraction": 0.8875,
               "stage": "foreground"}]
    log.write_text("".join(json.dumps(ev) + "\n" for ev in events))
    follower = LogFollower(str(log), 2)
    follower.poll()
    assert follower.fraction == pytest.approx(0.8875 / 2)
    with log.open("a") as f:       # an engine of before the fraction: its count restarts
        f.write(json.dumps({"event": "progress", "frame": 1, "done": 1, "total": 10}) + "\n")
    follower.poll()
    assert follower.fraction == pytest.approx(0.8875 / 2)


def test_log_follower_keeps_each_warning_once_with_its_frame(tmp_path):
    from nuke_hdmatt.nuke.engine_call import MAX_WARNINGS
    log = tmp_path / "log.jsonl"
    lines = [{"event": "warning", "frame": None, "text": "cache /c: cannot write"},
             {"event": "frame_start", "frame": 7},
             {"event": "warning", "frame": 7, "text": "t.0007.exr: every pixel is unknown"},
             {"event": "warning", "frame": 7, "text": "t.0007.exr: every pixel is unknown"},
             *({"event": "warning", "frame": f, "text": "x"} for f in range(100, 150))]
    log.write_text("".join(json.dumps(ev) + "\n" for ev in lines))
    follower = LogFollower(str(log), 1)
    assert follower.poll() == ["frame 7: starting"]  # a warning is no progress message
    warned = follower.result.warnings
    assert warned[:3] == ["cache /c: cannot write", "frame 7: t.0007.exr: every pixel is unknown",
                          "frame 100: x"]
    assert len(warned) == MAX_WARNINGS


def test_matte_job_argv_matches_cli_flags():
    from nuke_hdmatt.cli import build_parser
    job = EngineCall(plate="/w/plate.####.exr", trimap="/w/trimap.####.exr",
                   output="/o/alpha.####.exr", frames="1-4", plate_colorspace="ACEScg",
                   ocio="ocio://cg-config-latest", cache="/c")
    argv = job.argv("hdmatt", "/w/log.jsonl", frames="3-4")
    args = build_parser().parse_args(argv[1:])  # the real CLI accepts every flag
    assert (args.plate, args.trimap, args.output, args.frames) == \
        ("/w/plate.####.exr", "/w/trimap.####.exr", "/o/alpha.####.exr", "3-4")
    assert (args.trimap_channel, args.layer, args.plate_colorspace, args.ocio, args.cache) == \
        ("A", "rgba", "ACEScg", "ocio://cg-config-latest", "/c")
    assert (args.patch, args.overlap, args.k, args.pool, args.json_log) == \
        (320, 32, 3, 30, "/w/log.jsonl")
    assert InferenceSettings.from_options(vars(args)) == job.settings   # read back equal
    # a run-up before frame 0: one word, or argparse takes "-10--1" for an option
    assert build_parser().parse_args(job.argv("hdmatt", frames="-10--1")[1:]).frames == "-10--1"
    job.exposure = "-1e-05"                      # the node's -0.00001 stops, as canonical text
    assert build_parser().parse_args(job.argv("hdmatt")[1:]).exposure == "-1e-05"
    m = EngineCall(plate="p.####.exr", matte="m.####.exr", band=8, output="o.####.exr", frames="1")
    args = build_parser().parse_args(m.argv("hdmatt")[1:])
    assert (args.trimap, args.trimap_from_matte, args.band) == (None, "m.####.exr", 8)


@pytest.mark.parametrize("fields", [
    dict(trimap="/w/trimap.####.exr", trimap_channel="R", plate_colorspace="ACEScg",
         ocio="ocio://cg-config-latest", cache="/c", layer="hd", device="cpu",
         settings=InferenceSettings(patch=256, overlap=24, k=2, pool=12, precision="fp32",
                                    prior="global", detail=0.6),
         foreground="fg", premultiplied=True, exposure="off"),
    dict(matte="/w/matte.####.exr", band=8, exposure="-1.5"),
])
def test_farm_chunk_runs_the_job_the_cli_would_build(fields):
    """Farm step 2 calls the workflow directly: the same job and engine options as
    ``hdmatt matte`` parsing the call's argv."""
    from nuke_hdmatt.cli import build_parser, engine_kwargs, matte_job_from_args
    from nuke_hdmatt.farm.nuke_job import shot_job
    call = EngineCall(plate="/w/plate.####.exr", output="/o/alpha.####.exr", frames="1-4",
                    **fields)
    args = build_parser().parse_args(call.argv("hdmatt", frames="3-4")[1:])
    job, settings = shot_job(call, [3, 4])
    assert job == matte_job_from_args(args)
    assert settings.engine == engine_kwargs(args)
    assert (settings.cache, settings.no_cache, settings.json_log) == \
        (args.cache, args.no_cache, args.json_log)


def test_nuke_side_never_imports_torch_or_numpy():
    """What Nuke's Python loads (gizmos/init.py, the node module, the prepass) stays stdlib:
    Nuke ships its own libtorch, and a pip torch or numpy inside it breaks."""
    import subprocess
    import sys
    code = (
        "import sys, types, runpy\n"
        "nuke = types.ModuleType('nuke'); nuke.pluginPath = lambda: []\n"
        "sys.modules['nuke'] = nuke\n"
        f"runpy.run_path({str(ROOT / 'gizmos' / 'init.py')!r})\n"
        "import nuke_hdmatt.nuke.node, nuke_hdmatt.nuke.prepass, nuke_hdmatt.farm.nuke_job\n"
        "bad = sorted(m for m in ('torch', 'numpy', 'OpenImageIO', 'PyOpenColorIO')"
        " if m in sys.modules)\n"
        "print(bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=ROOT / "gizmos")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_engine_call_round_trips_through_its_job_file_form():
    call = EngineCall(plate="p.####.exr", trimap="t.####.exr", output="o.####.exr", frames="1-3",
                      settings=InferenceSettings(patch=64, overlap=16, prior="local", detail=0.0))
    d = json.loads(json.dumps(call.to_dict()))            # what farm step 1 writes
    assert EngineCall.from_dict(d) == call
