"""``hdmatt`` end to end on tiny real files: PNG still, EXR sequence with cache, missing
frames, bad input, info, cache commands. Every run is the real command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from cli_fixtures import (
    FAST,
    exr_sequence,
    hdmatt,
    hdmatt_env,
    hdmatt_loads_torch,
    json_events,
    make_frame,
    read_image,
    temp_leftovers,
    write_image,
)
from imaging_fixtures import Part, read_all, write_parts


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("hdmatt: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _png_inputs(tmp_path, plate_name="plate.png", trimap_name="trimap.png"):
    """An 8-bit PNG plate and trimap of :func:`make_frame`; the trimap's values."""
    plate, trimap = make_frame(0)
    write_image(tmp_path / plate_name, np.clip(plate * 1.2, 0, 1), "RGB", fmt="uint8")
    write_image(tmp_path / trimap_name, trimap, "Y", fmt="uint8")
    return trimap


def test_png_plate_and_trimap_to_8bit_png_alpha(tmp_path):
    trimap = _png_inputs(tmp_path)
    proc = hdmatt(tmp_path, "matte", "plate.png", "trimap.png", "-o", "alpha.png", *FAST,
                  "--no-cache")
    assert proc.returncode == 0, proc.stderr
    spec, alpha = read_image(tmp_path / "alpha.png")
    assert spec.nchannels == 1 and spec.format == "uint8"
    assert (spec.width, spec.height) == (48, 48)
    alpha = alpha[..., 0]
    assert np.all(alpha[trimap == 1.0] == 1.0) and np.all(alpha[trimap == 0.0] == 0.0)
    unknown = alpha[trimap == 0.5]
    assert unknown.size and np.all((unknown >= 0) & (unknown <= 1))
    assert temp_leftovers(tmp_path) == []


def test_inputs_whose_names_only_look_like_patterns_are_those_files(tmp_path):
    # a retina-style name (@ is an unpadded frame) and a hash in a still's name
    trimap = _png_inputs(tmp_path, "plate@2x.png", "trimap#1.png")
    proc = hdmatt(tmp_path, "matte", "plate@2x.png", "trimap#1.png", "-o", "alpha.png", *FAST,
                  "--no-cache")
    assert proc.returncode == 0, proc.stderr
    alpha = read_image(tmp_path / "alpha.png")[1][..., 0]
    assert np.all(alpha[trimap == 1.0] == 1.0) and np.all(alpha[trimap == 0.0] == 0.0)
    # with the literal file gone the name is a pattern again, and says so
    (tmp_path / "plate@2x.png").unlink()
    proc = hdmatt(tmp_path, "matte", "plate@2x.png", "trimap#1.png", "-o", "alpha2.png", *FAST,
                  "--no-cache")
    assert proc.returncode == 2 and "plate@2x.png" in proc.stderr, proc.stderr


def test_a_json_log_never_writes_into_the_weights_or_the_ocio_config(tmp_path):
    import shutil

    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS
    _png_inputs(tmp_path)
    weights = tmp_path / "w.safetensors"
    shutil.copy(BUNDLED_WEIGHTS, weights)
    config = tmp_path / "config.ocio"
    config.write_text("ocio_profile_version: 2\n")
    before = weights.read_bytes(), config.read_bytes()
    for extra, log in ((["--weights", weights], weights), (["--ocio", config], config),
                       ([], BUNDLED_WEIGHTS)):
        proc = hdmatt(tmp_path, "matte", "plate.png", "trimap.png", "-o", "alpha.png", *FAST,
                      "--no-cache", *extra, "--json-log", log)
        assert proc.returncode == 2 and "--json-log would write into" in proc.stderr, proc.stderr
    assert (weights.read_bytes(), config.read_bytes()) == before


def test_outputs_say_what_colour_their_pixels_are_in(tmp_path):
    """The EXR carries the plate's colours in the space the run read them in (a
    --plate-colorspace over the file's tag included); an alpha-only PNG is coverage, no sRGB
    chunk for a colour-managed reader to undo."""
    import struct
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")        # tagged ACEScg
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "alpha.exr", *FAST,
                  "--no-cache", "--plate-colorspace", "lin_rec709", "--foreground")
    assert proc.returncode == 0, proc.stderr
    spec, _ = read_image(tmp_path / "alpha.exr")
    # OpenImageIO reads the tag back as its colour interop name
    assert spec.getattribute("hdmatt:colorspace") == "Linear Rec.709 (sRGB)"
    assert spec.getattribute("oiio:ColorSpace") == "lin_rec709_scene"   # not lin_ap1_scene
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "alpha.png", *FAST,
                  "--no-cache")
    assert proc.returncode == 0, proc.stderr
    data, names = (tmp_path / "alpha.png").read_bytes()[8:], []
    while data:
        n = struct.unpack(">I", data[:4])[0]
        names.append(data[4:8].decode())
        data = data[12 + n:]
    assert "IDAT" in names and not {"sRGB", "gAMA", "cHRM", "iCCP"} & set(names)


def test_exr_sequence_cache_reuse_and_invalidation(tmp_path):
    plate, trimap = exr_sequence(tmp_path / "in", [1001, 1002, 1003])
    cache, log = tmp_path / "cache", tmp_path / "run.jsonl"
    args = ["matte", plate, trimap, "-o", "out/alpha.####.exr", "--frames", "1001-1003",
            *FAST, "--cache", cache, "--json-log", log]
    first = hdmatt(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "[3/3] frame 1003 done" in first.stderr  # per-frame progress on stderr
    for f in (1001, 1002, 1003):
        spec, pixels = read_image(tmp_path / f"out/alpha.{f}.exr")
        assert list(spec.channelnames) == ["R", "G", "B", "A"]
        assert spec.getattribute("hdmatt:frame") == f
        assert spec.getattribute("hdmatt:weights_id")
    done = [e for e in json_events(log) if e["event"] == "frame_done"]
    assert [(e["frame"], e["cached"]) for e in done] == [(1001, False), (1002, False), (1003, False)]
    assert any(e["event"] == "progress" for e in json_events(log))

    # change one pixel of one frame: only that frame is recomputed
    changed, _ = make_frame(1002)
    changed[5, 5] += 0.25
    write_image(tmp_path / "in/plate.1002.exr", changed, "RGB")
    log.unlink()
    second = hdmatt(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    done = [(e["frame"], e["cached"]) for e in json_events(log) if e["event"] == "frame_done"]
    assert done == [(1001, True), (1002, False), (1003, True)]
    assert "2 from cache" in second.stderr
    assert temp_leftovers(tmp_path / "out", cache) == []
    # a damaged entry is said after the frames, as no frame's, and shot_done stays the last
    # record (a log reader stops there; the warning came after it, carrying frame 1003)
    entry = next(p for p in cache.rglob("*.alpha") if b'"frame": 1001' in p.read_bytes())
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF
    entry.write_bytes(bytes(data))
    log.unlink()
    assert hdmatt(tmp_path, *args).returncode == 0
    events = json_events(log)
    assert events[-1]["event"] == "shot_done"
    [said] = [e for e in events if e["event"] == "warning" and "unreadable" in e["text"]]
    assert said["frame"] is None

    info = hdmatt(tmp_path, "info", "out/alpha.1002.exr")
    assert info.returncode == 0, info.stderr
    assert "channels R, G, B, A" in info.stdout and "made by hdmatt" in info.stdout
    assert "weights_id" in info.stdout and "colorspace: ACEScg" in info.stdout


def test_a_later_frame_without_the_plates_channels_fails_that_frame_only(tmp_path):
    """Frame 1's inputs were checked before the engine loaded; frame 2's plate of luminance
    alone stopped the whole shot with exit 2 and no last record in the log."""
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3])
    luma, _ = make_frame(2)
    write_image(tmp_path / "in/plate.0002.exr", luma[..., 1], "Y")
    log = tmp_path / "run.jsonl"
    proc = hdmatt(tmp_path, "matte", plate, trimap, "-o", "out/a.####.exr", *FAST, "--no-cache",
                  "--json-log", log)
    assert proc.returncode == 1, proc.stderr
    assert "1 failed: 2" in proc.stderr and "plate.0002.exr" in proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.0001.exr", "a.0003.exr"]
    events = json_events(log)
    assert [e["frame"] for e in events if e["event"] == "frame_failed"] == [2]
    assert events[-1]["event"] == "shot_done" and events[-1]["failed"] == [2]


def test_missing_frame_fails_that_frame_only_exit_1(tmp_path):
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3])
    (tmp_path / "in/plate.0002.exr").unlink()
    proc = hdmatt(tmp_path, "matte", plate, trimap, "-o", "out/a.####.exr", *FAST, "--no-cache")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "1 failed: 2" in proc.stderr
    assert "frame 2:" in proc.stderr and "plate.0002.exr" in proc.stderr
    assert (tmp_path / "out/a.0001.exr").exists() and (tmp_path / "out/a.0003.exr").exists()
    assert not (tmp_path / "out/a.0002.exr").exists()


@pytest.mark.parametrize("extra, needles", [
    (["--plate-channels", "R,G,nope"], ["channel", "nope", "plate.0001.exr", "frame 1"]),
    (["--plate-colorspace", "NotASpace"], ["NotASpace"]),
    (["--frames", "5-1"], ["--frames", "5-1"]),
    (["--compression", "lzma"], ["lzma"]),
    (["-o", "in/plate.####.exr"], ["overwrite an input"]),
    (["--threads", "0"], ["--threads", "0"]),
    (["--threads", "100000"], ["--threads", "100000"]),
])
def test_bad_input_is_one_line_exit_2_without_loading_torch(tmp_path, extra, needles):
    plate, trimap = exr_sequence(tmp_path / "in", [1])
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.0001.exr").write_bytes(b"previous output")
    proc, torch_loaded = hdmatt_loads_torch(tmp_path, "matte", plate, trimap, "-o",
                                            "out/a.####.exr", "--frames", "1", "--no-cache",
                                            *extra)
    _assert_one_line_error(proc, *needles)
    assert not torch_loaded  # refused before the engine was loaded
    assert (tmp_path / "out/a.0001.exr").read_bytes() == b"previous output"


def test_info_and_cache_commands_never_import_torch(tmp_path):
    plate, _ = exr_sequence(tmp_path, [7])
    code = ("import sys\nfrom nuke_hdmatt.cli import main\n"
            f"assert main(['info', {str(tmp_path / 'plate.0007.exr')!r}]) == 0\n"
            f"assert main(['cache', '--cache', {str(tmp_path / 'c')!r}, 'ls']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "channels R, G, B" in proc.stdout


def test_info_reads_a_weights_files_header_without_torch(tmp_path):
    import json

    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS, file_sha256
    code = ("import sys\nfrom nuke_hdmatt.cli import main\n"
            f"rc = main(['info', {str(BUNDLED_WEIGHTS)!r}, '--json'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["sha256"] == file_sha256(BUNDLED_WEIGHTS) == info["sha256_recorded"]
    assert info["config"]["variant"] == "D" and info["detail_model"].endswith(".detail.json")
    (tmp_path / "x.safetensors").write_text("not weights")
    proc = hdmatt(tmp_path, "info", "x.safetensors")
    assert proc.returncode == 2 and "not a readable safetensors file" in proc.stderr


def test_cache_ls_gc_clear(tmp_path):
    from nuke_hdmatt.shot.cache import FrameCache
    cache = FrameCache(tmp_path / "c")
    for i in range(3):
        cache.put(f"{i:064x}", np.full((16, 16), i / 3, np.float32), {"frame": i, "plate": "p.exr"})
    ls = hdmatt(tmp_path, "cache", "ls", "--cache", tmp_path / "c")
    assert ls.returncode == 0 and len(ls.stdout.splitlines()) == 3 and "3 entries" in ls.stderr
    assert "(limit 50.0G, $HDMATT_CACHE_MAX_SIZE)" in ls.stderr    # the size it keeps under
    gc = hdmatt(tmp_path, "cache", "--cache", tmp_path / "c", "gc")     # the runs' limit: keeps
    assert gc.returncode == 0 and "removed 0" in gc.stderr and len(cache.entries()) == 3
    zero = hdmatt(tmp_path, "cache", "--cache", tmp_path / "c", "gc", "--max-size", "0")
    _assert_one_line_error(zero, "cache clear")     # 0 is "no limit" in the variable
    assert len(cache.entries()) == 3
    gc = hdmatt(tmp_path, "cache", "--cache", tmp_path / "c", "gc", "--max-size", "1")
    assert gc.returncode == 0 and "removed 3" in gc.stderr and cache.entries() == []
    bad = hdmatt(tmp_path, "cache", "gc", "--max-size", "lots")
    _assert_one_line_error(bad, "lots")


@pytest.mark.parametrize("limit", ["nan", "inf", "1e400"])
def test_cache_ls_with_a_size_limit_that_is_no_number_warns_and_keeps_the_default(tmp_path, limit):
    env = {**hdmatt_env(tmp_path), "HDMATT_CACHE_MAX_SIZE": limit}
    ls = subprocess.run([sys.executable, "-m", "nuke_hdmatt.cli", "cache", "ls", "--cache",
                         str(tmp_path / "c")], capture_output=True, text=True, timeout=60,
                        env=env, cwd=tmp_path)
    assert ls.returncode == 0 and "internal error" not in ls.stderr, ls.stderr
    assert [ln for ln in ls.stderr.splitlines() if "not a size" in ln] == [
        f"hdmatt: warning: $HDMATT_CACHE_MAX_SIZE={limit!r} is not a size (500M, 50G, 0 for no "
        "limit); keeping the cache under 50.0G"], ls.stderr
    assert "(limit 50.0G, $HDMATT_CACHE_MAX_SIZE)" in ls.stderr


def test_delegated_commands_get_the_rest_of_the_command_line(monkeypatch):
    import types

    from nuke_hdmatt import cli
    seen = {}
    for name in ("nuke_hdmatt.evaluation", "nuke_hdmatt.training.cli", "nuke_hdmatt.farm.nuke_job"):
        mod = types.ModuleType(name)
        mod.main = lambda argv, name=name: seen.setdefault(name, list(argv)) and 0
        monkeypatch.setitem(sys.modules, name, mod)
    assert cli.main(["eval", "--weights", "w.safetensors", "x"]) == 0
    assert cli.main(["train", "--steps", "5"]) == 0
    assert cli.main(["farm", "nuke", "shot.nk", "--frames", "1-2"]) == 0
    assert seen == {"nuke_hdmatt.evaluation": ["--weights", "w.safetensors", "x"],
                    "nuke_hdmatt.training.cli": ["--steps", "5"],
                    "nuke_hdmatt.farm.nuke_job": ["shot.nk", "--frames", "1-2"]}


def test_prior_choice_reaches_the_engine(tmp_path):
    from nuke_hdmatt.imaging import read_hdmatt_metadata
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    # the stamp says which prior ran: on a 48 px frame the cascade is the global prior
    for prior, ran in (("global", "global"), ("cascade", "global"), ("local", "local")):
        proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", f"{prior}.exr", *FAST,
                      "--no-cache", "--prior", prior)
        assert proc.returncode == 0, proc.stderr
        assert read_hdmatt_metadata(str(tmp_path / f"{prior}.exr"))["params"]["prior"] == ran
    bad = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "x.exr", "--prior", "nope")
    assert bad.returncode == 2 and "--prior" in bad.stderr and "Traceback" not in bad.stderr


def test_threads_reach_the_engine_and_farm_tasks(tmp_path):
    """A farm task sharing a machine takes its share of the cores: --threads sets torch's
    (the engine says how many it runs on) and farm task commands carry it."""
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    # the test environment sets OMP_NUM_THREADS=1: without --threads the engine runs on one
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "t.exr", *FAST,
                  "--no-cache")
    assert proc.returncode == 0 and ", 1 CPU thread(s))" in proc.stderr, proc.stderr
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "t3.exr", *FAST,
                  "--no-cache", "--threads", "3")
    assert proc.returncode == 0 and ", 3 CPU thread(s))" in proc.stderr, proc.stderr
    import argparse

    from nuke_hdmatt.cli import add_matte_options, build_parser, matte_argv
    ap = argparse.ArgumentParser()
    actions = add_matte_options(ap)
    words = matte_argv(ap.parse_args(["--threads", "4"]), actions)
    assert words == ["--threads", "4"]
    build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", "--threads", "4"])
    # a negative value stays one word: argparse would read "-1e-05" as an option
    words = matte_argv(ap.parse_args(["--exposure=-0.00001"]), actions)
    assert words == ["--exposure=-1e-05"]
    assert build_parser().parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", *words]
                                     ).exposure == "-1e-05"


def test_detail_reaches_the_engine_and_bad_values_are_refused(tmp_path):
    """On a frame the cascade takes (over 1024 px) the step is in the stamp and the cache key;
    on one within 1024 px, which takes no step, it is neither: changing it hits the cache."""
    from nuke_hdmatt.imaging import read_hdmatt_metadata
    rng = np.random.default_rng(3)
    wide = np.clip(np.arange(1032)[None, :] / 1032.0 + 0 * np.arange(40)[:, None], 0, 1)
    write_image(tmp_path / "wide.exr", np.stack([wide, 1 - wide, rng.random(wide.shape)], -1),
                "RGB")
    tri = np.where(wide < 0.45, 0.0, np.where(wide > 0.55, 1.0, 0.5)).astype(np.float32)
    write_image(tmp_path / "wide_tri.exr", tri, "Y")
    proc = hdmatt(tmp_path, "matte", "wide.exr", "wide_tri.exr", "-o", "d.exr", *FAST,
                  "--no-cache", "--detail", "0.6")
    assert proc.returncode == 0, proc.stderr
    assert read_hdmatt_metadata(str(tmp_path / "d.exr"))["params"]["detail"] == 0.6
    proc = hdmatt(tmp_path, "matte", "wide.exr", "wide_tri.exr", "-o", "auto.exr", *FAST,
                  "--no-cache", "--detail", "auto")
    assert proc.returncode == 0, proc.stderr
    # the shipped weights carry a detail model: auto names its digest
    assert read_hdmatt_metadata(str(tmp_path / "auto.exr"))["params"]["detail"].startswith("auto:")
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    for step, cached in (("0.6", False), ("auto", True)):
        proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "small.exr", *FAST,
                      "--cache", "c", "--detail", step, "--prior", "cascade")
        assert proc.returncode == 0 and ("1 from cache" in proc.stderr) == cached, proc.stderr
    params = read_hdmatt_metadata(str(tmp_path / "small.exr"))["params"]
    assert "detail" not in params and params["prior"] == "global"
    for bad in ("1.5", "-0.1", "nan", "automatic", ""):
        out = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "x.exr", "--detail", bad)
        err = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(err) == 1 and "--detail" in err[0], out.stderr
    assert not (tmp_path / "x.exr").exists()


def test_the_plate_given_as_the_trimap_is_refused_before_the_engine_loads(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    photo = 0.5 + 0.3 * np.sin(xx / 7)[..., None] * np.cos(yy / 5)[..., None] * [1, 0.8, 0.6]
    plate = str(tmp_path / "plate.png")
    write_image(plate, (photo + 0.1 * rng.random((64, 64, 3))).astype(np.float32), "RGB")
    proc, torch_loaded = hdmatt_loads_torch(tmp_path, "matte", plate, plate, "-o", "a.png",
                                            "--no-cache")
    _assert_one_line_error(proc, "does not look like a trimap", "plate.png")
    assert not torch_loaded


@pytest.mark.parametrize("out, option, needle", [
    ("a.exr", ["--bit-depth", "16"], "--bit-depth applies to PNG/TIFF"),
    ("a.png", ["--float"], "--float applies to EXR"),
    ("a.tif", ["--layer", "matte"], "--layer matte applies to EXR"),
])
def test_an_option_of_another_output_format_is_refused(tmp_path, out, option, needle):
    """Silently ignored, ``--bit-depth 16`` on an EXR wrote half and ``--float`` on a PNG
    wrote 8 bits: the user asked for something the file does not hold."""
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    proc, torch_loaded = hdmatt_loads_torch(tmp_path, "matte", "plate.exr", "trimap.exr",
                                            "-o", out, "--no-cache", *option)
    _assert_one_line_error(proc, needle, out)
    assert not torch_loaded and not (tmp_path / out).exists()


def test_hair_over_a_sky_above_white_is_not_clipped_into_it(tmp_path):
    """A soft edge over a background at eight times display white: clipped to white for the
    network, every partly covered pixel looked like sky and its alpha went towards 0; the
    frame darkened for the network (``--exposure fit``, the default) keeps the edge, and so
    does one exposure given in stops."""
    from nuke_hdmatt.imaging import read_hdmatt_metadata
    size = 64
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size]
    alpha = np.clip((size * 0.3 - np.hypot(yy - size / 2, xx - size / 2)) / 6 + 0.5, 0, 1)
    sky = 8.0 + rng.uniform(0, 1, (size, size, 3))
    plate = alpha[..., None] * [0.3, 0.2, 0.1] + (1 - alpha[..., None]) * sky
    trimap = np.full((size, size), 0.5, np.float32)
    trimap[alpha > 0.999] = 1.0
    trimap[alpha < 0.001] = 0.0
    write_image(tmp_path / "plate.exr", plate, "RGB", fmt="float")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    unknown = trimap == 0.5
    sad = {}
    for mode in ("fit", "off", "-3.0"):  # -3 stops: one exposure a TD sets for the shot
        proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", f"out{mode}.exr", *FAST,
                      "--no-cache", "--exposure", mode)
        assert proc.returncode == 0, proc.stderr
        assert ("stops darker: its unknown band holds highlights" in proc.stderr) == (mode == "fit")
        got = read_image(tmp_path / f"out{mode}.exr")[1][..., -1]
        sad[mode] = float(np.abs(got - alpha)[unknown].sum())
        meta = read_hdmatt_metadata(str(tmp_path / f"out{mode}.exr"))
        assert meta["params"]["exposure"] == ("-3" if mode == "-3.0" else mode)
    assert sad["fit"] < 0.6 * sad["off"], sad  # measured 146 against 318
    assert sad["-3.0"] < 0.6 * sad["off"], sad
    for bad in ("auto", "21", "nan", "clip"):
        proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "x.exr",
                      "--exposure", bad)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and "--exposure" in err[0], proc.stderr


def test_a_night_plate_is_brightened_for_the_network(tmp_path):
    """The same soft edge with everything six stops under: its band peaks far below white,
    where the sRGB curve's shadows hold little contrast; fitted, the network sees it at half
    of white, and the alpha is the one of the plate exposed normally."""
    size = 64
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:size, 0:size]
    alpha = np.clip((size * 0.3 - np.hypot(yy - size / 2, xx - size / 2)) / 6 + 0.5, 0, 1)
    scene = (alpha[..., None] * [0.8, 0.6, 0.4]
             + (1 - alpha[..., None]) * rng.uniform(0.05, 0.25, (size, size, 3)))
    trimap = np.full((size, size), 0.5, np.float32)
    trimap[alpha > 0.999] = 1.0
    trimap[alpha < 0.001] = 0.0
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    from nuke_hdmatt.imaging import exposure_gain, resolve_config
    night = (scene / 64).astype(np.float32)  # an EXR's default space: ACEScg, scene_linear
    gain = exposure_gain(night, "ACEScg", resolve_config(None)[0], trimap == 0.5)
    assert 30 < gain < 50  # the band's peak (about 0.8 / 64) to half of white
    got = {}
    for name, plate, mode in (("night", night, "fit"), ("day", night * gain, "off"),
                              ("night_off", night, "off")):
        write_image(tmp_path / f"{name}.exr", plate, "RGB", fmt="float")
        proc = hdmatt(tmp_path, "matte", f"{name}.exr", "trimap.exr", "-o", f"{name}_a.exr",
                      *FAST, "--no-cache", "--exposure", mode)
        assert proc.returncode == 0, proc.stderr
        assert ("stops brighter" in proc.stderr) == (name == "night"), proc.stderr
        got[name] = read_image(tmp_path / f"{name}_a.exr")[1][..., -1]
    # fitted, the night plate is the plate exposed by that gain, to the half-float output's
    # rounding; left as it is, it is another alpha
    assert np.abs(got["night"] - got["day"]).max() < 2e-3
    assert np.abs(got["night_off"] - got["day"]).max() > 0.01


def test_part_mattes_one_view_of_a_stereo_plate_with_its_trimap(tmp_path):
    """--part right: the right view's plate and trimap (the trimap's part of that name);
    the alpha lands in that part, the left part is copied untouched."""
    left_plate, left_tri = make_frame(3)
    right_plate, right_tri = make_frame(8)
    write_parts(tmp_path / "stereo.exr", [Part(left_plate, ("R", "G", "B"), name="left"),
                                          Part(right_plate, ("R", "G", "B"), name="right")])
    write_parts(tmp_path / "tri.exr", [Part(left_tri[..., None], ("Y",), name="left"),
                                       Part(right_tri[..., None], ("Y",), name="right")])
    write_image(tmp_path / "right.exr", right_plate, "RGB")
    write_image(tmp_path / "right_tri.exr", right_tri, "Y")
    r = hdmatt(tmp_path, "matte", "stereo.exr", "tri.exr", "-o", "out.exr", "--part", "right",
               "--no-cache", *FAST)
    assert r.returncode == 0, r.stderr
    assert "parts" not in r.stderr  # chosen: no "the first part is read" warning
    r = hdmatt(tmp_path, "matte", "right.exr", "right_tri.exr", "-o", "mono.exr", "--no-cache",
               *FAST)
    assert r.returncode == 0, r.stderr
    (s0, p0), (s1, p1) = read_all(tmp_path / "out.exr")
    assert list(s0.channelnames) == ["R", "G", "B"]  # the left view as it was
    np.testing.assert_allclose(p0, left_plate, atol=2**-10)
    [(sm, pm)] = read_all(tmp_path / "mono.exr")
    a = list(s1.channelnames).index("A")
    np.testing.assert_array_equal(p1[..., a], pm[..., list(sm.channelnames).index("A")])


def test_a_part_the_plate_lacks_is_refused_before_any_frame(tmp_path):
    plate, tri = make_frame(3)
    write_parts(tmp_path / "stereo.exr", [Part(plate, ("R", "G", "B"), name="left"),
                                          Part(plate, ("R", "G", "B"), name="right")])
    write_image(tmp_path / "tri.exr", tri, "Y")
    r = hdmatt(tmp_path, "matte", "stereo.exr", "tri.exr", "-o", "out.exr", "--part", "centre",
               "--no-cache", *FAST)
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("hdmatt: error: ") and "stereo.exr" in line
    assert "no part 'centre'" in line and "[left] R, G, B; [right] R, G, B" in line
    assert not (tmp_path / "out.exr").exists()
    # a matte of several parts without the plate's: refused (its first is another view's)
    write_parts(tmp_path / "roto.exr", [Part(tri[..., None], ("A",), name="L"),
                                        Part(tri[..., None], ("A",), name="R")])
    r = hdmatt(tmp_path, "matte", "stereo.exr", "--trimap-from-matte", "roto.exr", "-o",
               "out.exr", "--part", "right", "--no-cache", *FAST)
    assert r.returncode == 2, r.stderr
    assert "roto.exr" in r.stderr and "no part 'right' (--part) among its parts: [L] A; [R] A" \
        in r.stderr


def test_an_error_that_stops_the_shot_is_one_line_and_the_logs_last_record(tmp_path,
                                                                           monkeypatch, capsys):
    """An output that cannot be written stops the shot at any frame: said once (a FAILED
    progress line came before the error line), and shot_done carries it."""
    import nuke_hdmatt.imaging as imaging
    from nuke_hdmatt.cli import main
    from nuke_hdmatt.errors import OutputError

    plate, trimap = exr_sequence(tmp_path / "in", [1, 2], size=48)
    real = imaging.write_alpha

    def full_disk(path, *args, **kwargs):
        if str(path).endswith("a.0002.exr"):
            raise OutputError("write failed: No space left on device", path=str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imaging, "write_alpha", full_disk)
    log = tmp_path / "run.jsonl"
    rc = main(["matte", plate, trimap, "-o", str(tmp_path / "out/a.####.exr"), *FAST,
               "--no-cache", "--json-log", str(log)])
    assert rc == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "No space left" in ln] == [
        f"hdmatt: error: {tmp_path}/out/a.0002.exr, frame 2: write failed: No space left on "
        "device"], err
    last = json_events(log)[-1]
    assert last["event"] == "shot_done" and last["done"] == [1] and last["failed"] == [2]
    assert "No space left" in last["error"]
