"""``hdmatt demo``: deterministic furry plate, the full matte chain, preview PNG."""

from __future__ import annotations

import numpy as np
import pytest

from cli_fixtures import hdmatt, read_image, temp_leftovers


def test_demo_plate_is_deterministic_and_hairy():
    from nuke_hdmatt.demo import HEIGHT, WIDTH, make_plate
    plate, trimap, alpha = make_plate()
    again, _, _ = make_plate()
    assert np.array_equal(plate, again)
    assert plate.shape == (HEIGHT, WIDTH, 3) and plate.dtype == np.float32
    assert set(np.unique(trimap)) == {0.0, 0.5, 1.0}
    soft = (alpha > 0.02) & (alpha < 0.98)
    # sub-pixel strands leave many fractional-alpha pixels, all inside the unknown band
    assert soft.sum() > 20000 and np.all(trimap[soft] == 0.5)
    assert np.all(alpha[trimap == 1.0] > 0.99) and np.all(alpha[trimap == 0.0] < 0.01)


def test_demo_command_writes_alpha_and_preview(tmp_path):
    proc = hdmatt(tmp_path, "demo", "-o", "demo", "--no-cache", timeout=300)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "demo"
    for name in ("plate.exr", "trimap.exr", "alpha.exr", "alpha_truth.exr", "preview.png"):
        assert str(folder / name) in proc.stdout, proc.stdout
    spec, plate = read_image(folder / "plate.exr")
    assert spec.getattribute("oiio:ColorSpace") == "lin_rec709_scene"
    spec, alpha = read_image(folder / "alpha.exr")
    assert list(spec.channelnames) == ["R", "G", "B", "A", "fg.R", "fg.G", "fg.B"]
    assert spec.getattribute("hdmatt:colorspace") == "Linear Rec.709 (sRGB)"
    _, trimap = read_image(folder / "trimap.exr")
    a, t = alpha[..., 3], trimap[..., 0]
    assert np.all(a[t == 1.0] == 1.0) and np.all(a[t == 0.0] == 0.0)
    spec, preview = read_image(folder / "preview.png")
    assert (spec.width, spec.height, spec.nchannels) == (5 * 640, 480, 3)
    assert spec.format == "uint8"
    # brown fur over the checkerboard: with the estimated foreground the hair pixels lose
    # the green-blue plate background that the premultiplied plate drags along
    hair = (a > 0.2) & (a < 0.8) & (t == 0.5)
    fg_comp, plate_comp = preview[:, 3 * 640:4 * 640], preview[:, 4 * 640:]
    warmth = lambda img: float((img[..., 0] - img[..., 2])[hair].mean())
    assert hair.sum() > 1000 and warmth(fg_comp) > warmth(plate_comp) + 0.02
    assert temp_leftovers(folder) == []


def test_demo_on_a_device_this_machine_lacks_writes_nothing(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the demo would run")
    (tmp_path / "old").mkdir()
    for out in ("new/demo", "old"):
        proc = hdmatt(tmp_path, "demo", "-o", out, "--device", "cuda", "--no-cache")
        assert proc.returncode == 2 and "CUDA is not available" in proc.stderr, proc.stderr
        assert "generating" not in proc.stderr   # refused before the plate was made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert list((tmp_path / "old").iterdir()) == []


@pytest.mark.parametrize("content", [b"not weights at all", b"\x10\x00\x00\x00\x00\x00\x00\x00"
                                     b'{"a": 1}        '])
def test_demo_with_a_file_that_is_not_weights_writes_nothing(tmp_path, content):
    (tmp_path / "w.safetensors").write_bytes(content)
    proc = hdmatt(tmp_path, "demo", "-o", "demo", "--weights", "w.safetensors", "--no-cache")
    assert proc.returncode == 2 and "w.safetensors" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "generating" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_strand_points_split_their_area_bilinearly_and_off_frame_corners_drop():
    from nuke_hdmatt.strands import splat_bilinear
    y, x = np.array([1.25, 3.5]), np.array([2.5, 4.5])  # the second's corners: 1 of 4 inside
    colour = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    density, coloured = splat_bilinear(y, x, np.array([2.0, 4.0]), colour, (4, 5))
    want = np.zeros((4, 5))
    want[1, 2:4] = 2 * 0.75 * 0.5
    want[2, 2:4] = 2 * 0.25 * 0.5
    want[3, 4] = 4 * 0.25
    np.testing.assert_allclose(density, want)
    np.testing.assert_allclose(coloured[..., 0], np.where(np.arange(5) < 4, want, 0))
    np.testing.assert_allclose(coloured[..., 1], np.where(np.arange(5) == 4, want, 0))
