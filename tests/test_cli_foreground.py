"""``hdmatt matte --foreground [LAYER] / --premultiplied``: the layers written, their colour,
the cache beside the alpha, ``hdmatt info``, the farm template, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cli_fixtures import FAST, exr_sequence, hdmatt, json_events, make_frame, read_image, write_image
from test_cli import _assert_one_line_error

DISC = np.array([0.8, 0.6, 0.4], np.float32)  # make_frame's foreground colour (ACEScg)


def _channels(spec, pixels, names):
    index = [list(spec.channelnames).index(n) for n in names]
    return pixels[..., index]


def test_foreground_layer_cached_beside_the_alpha_and_shown_by_info(tmp_path):
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2])
    args = ["matte", plate, trimap, "-o", "out/a.####.exr", "--frames", "1-2", *FAST,
            "--cache", tmp_path / "cache", "--foreground"]
    first = hdmatt(tmp_path, *args, "--json-log", tmp_path / "log.jsonl")
    assert first.returncode == 0, first.stderr
    # each frame's progress leaves the foreground its share (a frame this small solves it
    # whole: its levels are counted) and only goes forward
    for frame in (1, 2):
        steps = [e for e in json_events(tmp_path / "log.jsonl")
                 if e["event"] == "progress" and e["frame"] == frame]
        fractions = [e["fraction"] for e in steps]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert 0.85 in fractions and {e["stage"] for e in steps if e["fraction"] > 0.85} == {
            "foreground"}
    spec, pixels = read_image(tmp_path / "out/a.0001.exr")
    assert list(spec.channelnames) == ["R", "G", "B", "A", "fg.R", "fg.G", "fg.B"]
    rgb, fg = _channels(spec, pixels, "RGB"), _channels(spec, pixels, ["fg.R", "fg.G", "fg.B"])
    alpha = _channels(spec, pixels, ["A"])[..., 0]
    solid = alpha >= 1.0
    assert np.allclose(fg[solid], rgb[solid], atol=2e-3)  # the plate is F where alpha is 1
    edge = (alpha > 0.2) & (alpha < 0.95)
    assert edge.sum() > 20
    # F is the disc's colour, not the plate's mix of disc and dark background
    assert np.abs(fg[edge] - DISC).mean() < 0.5 * np.abs(rgb[edge] - DISC).mean()
    assert spec.getattribute("hdmatt:foreground") == "fg"

    from nuke_hdmatt.shot.cache import FrameCache
    entries = FrameCache(tmp_path / "cache").entries()
    assert sorted(e.meta.get("kind", "alpha") for e in entries) == ["alpha", "alpha",
                                                                     "foreground", "foreground"]
    again = hdmatt(tmp_path, *args)
    assert again.returncode == 0 and "2 from cache" in again.stderr, again.stderr
    spec2, pixels2 = read_image(tmp_path / "out/a.0001.exr")
    assert np.array_equal(pixels2, pixels)
    assert len(FrameCache(tmp_path / "cache").entries()) == 4

    info = hdmatt(tmp_path, "info", "out/a.0001.exr")
    assert info.returncode == 0, info.stderr
    assert "layers rgba (R, G, B, A), fg (R, G, B)" in info.stdout
    assert "foreground: fg" in info.stdout


def test_premultiplied_writes_alpha_times_foreground_into_rgba(tmp_path):
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", plate, "RGB")
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", "a.exr", *FAST,
                  "--no-cache", "--premultiplied", "--foreground", "colour")
    assert proc.returncode == 0, proc.stderr
    spec, pixels = read_image(tmp_path / "a.exr")
    alpha = _channels(spec, pixels, ["A"])[..., 0]
    fg = _channels(spec, pixels, ["colour.R", "colour.G", "colour.B"])
    pre = _channels(spec, pixels, "RGB")
    # a linear plate: aF exactly, but for the three values' half rounding
    assert np.allclose(pre, alpha[..., None] * fg, atol=2e-3)
    assert not np.allclose(pre, plate * alpha[..., None], atol=1e-2)  # not the plate's aI


@pytest.mark.parametrize("extra, output, needles", [
    (["--foreground"], "a.png", ["--foreground", ".exr", "a.png"]),
    (["--premultiplied"], "a.tif", ["--premultiplied", ".exr"]),
    (["--foreground", "rgba"], "a.exr", ["rgba", "layer name"]),
    (["--foreground", "matte", "--layer", "matte"], "a.exr", ["--layer"]),
    (["--foreground", "spec"], "a.exr", ["clashes", "spec.R", "plate.exr"]),
])
def test_bad_foreground_options_one_line_exit_2_before_the_engine(tmp_path, extra, output,
                                                                   needles):
    plate, trimap = make_frame(0)
    write_image(tmp_path / "plate.exr", np.concatenate([plate, plate[..., :1]], -1),
                ["R", "G", "B", "spec.R"])
    write_image(tmp_path / "trimap.exr", trimap, "Y")
    proc = hdmatt(tmp_path, "matte", "plate.exr", "trimap.exr", "-o", output, "--no-cache",
                  *extra)
    _assert_one_line_error(proc, *needles)
    assert "engine" not in proc.stderr  # refused before the engine was loaded
    assert not (tmp_path / output).exists()


def test_farm_template_passes_the_foreground_options_on(tmp_path):
    import yaml
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3, 4])
    proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "out/a.####.exr",
                  "--frames", "1-4", "--hdmatt", "/opt/hdmatt", "--foreground", "hair",
                  "--premultiplied")
    assert proc.returncode == 0, proc.stderr
    [step] = yaml.safe_load(proc.stdout)["steps"]
    args = step["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--foreground") + 1] == "hair" and "--premultiplied" in args
