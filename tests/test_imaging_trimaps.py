"""Trimaps: every encoding, channel choice, generation from a matte, validation."""

import numpy as np
import pytest

from imaging_fixtures import rng_pixels, write_image
from nuke_hdmatt.errors import ChannelError, SizeMismatchError, TrimapError
from nuke_hdmatt.imaging import (
    Trimap,
    check_trimap,
    fit_trimap_to_plate,
    has_unknown,
    read_plate,
    read_trimap,
    snap_trimap,
    trimap_from_matte,
    trimap_from_plate,
)
from nuke_hdmatt.imaging.trimaps import LEVEL_SHARE, level_share

# Reference layout: left third background, middle unknown, right third foreground.
TRUTH = np.repeat(np.array([[0.0] * 4 + [0.5] * 4 + [1.0] * 4], np.float32), 6, axis=0)


def encoded(levels):
    bg, unk, fg = levels
    return np.where(TRUTH == 0, bg, np.where(TRUTH == 1, fg, unk)).astype(np.float32)


@pytest.mark.parametrize("name,ext,fmt,levels", [
    ("float 0/0.5/1", "exr", "half", (0.0, 0.5, 1.0)),
    ("8-bit 0/128/255", "png", "uint8", (0, 128 / 255, 1.0)),
    ("8-bit 0/102/255", "png", "uint8", (0, 102 / 255, 1.0)),
    ("16-bit 0/32768/65535", "tif", "uint16", (0, 32768 / 65535, 1.0)),
])
def test_file_encodings(tmp_path, name, ext, fmt, levels):
    path = write_image(tmp_path / f"t.{ext}", encoded(levels), channels=("Y",), fmt=fmt)
    tri = read_trimap(path)
    np.testing.assert_array_equal(tri.values, TRUTH)
    assert tri.values.dtype == np.float32 and tri.channel == "Y"


def test_antialiased_edges_snap_to_unknown(tmp_path):
    soft = encoded((0.0, 0.5, 1.0))
    soft[:, 3] = 0.25   # soft pixel between background and unknown
    soft[:, 8] = 0.75   # soft pixel between unknown and foreground
    soft[0, 0], soft[0, 11] = 0.19, 0.81  # just inside the known thresholds
    tri = read_trimap(write_image(tmp_path / "aa.png", soft, channels=("Y",), fmt="uint8"))
    want = TRUTH.copy()
    want[:, 3] = want[:, 8] = 0.5
    np.testing.assert_array_equal(tri.values, want)


def test_raw_integer_arrays():
    np.testing.assert_array_equal(snap_trimap(encoded((0, 128, 255)).astype(np.uint8)), TRUTH)
    np.testing.assert_array_equal(snap_trimap(encoded((0, 102, 255))), TRUTH)
    np.testing.assert_array_equal(snap_trimap(encoded((0, 30000, 65535))), TRUTH)
    np.testing.assert_array_equal(snap_trimap(encoded((0, 1, 255)).astype(np.uint8)),
                                  np.where(TRUTH == 1, 1.0, 0.0))  # code 1 is dark, not white
    # A filtered float trimap overshooting 1 is not mistaken for 8-bit codes.
    np.testing.assert_array_equal(snap_trimap(encoded((-0.02, 0.5, 1.08))), TRUTH)
    # Nor is one with a hot pixel far above 2 (a filter's ringing, a stray paint stroke).
    hot = encoded((0.0, 0.5, 1.0))
    hot[0, 0] = 3.0
    want = TRUTH.copy()
    want[0, 0] = 1.0
    np.testing.assert_array_equal(snap_trimap(hot), want)
    np.testing.assert_array_equal(snap_trimap(encoded((0.0, 128.0, 255.0))), TRUTH)  # codes


def test_an_opaque_alpha_beside_a_grey_trimap_reads_the_grey(tmp_path):
    grey = np.stack([TRUTH, np.ones_like(TRUTH)], axis=2)
    tri = read_trimap(write_image(tmp_path / "ya.png", grey, channels=("Y", "A"), fmt="uint8"))
    assert tri.channel == "Y"
    np.testing.assert_array_equal(tri.values, TRUTH)


def test_a_roto_drawn_in_rgb_with_an_opaque_alpha_is_read_from_rgb(tmp_path):
    from nuke_hdmatt.shot.matte import _read_matte
    roto = np.zeros(TRUTH.shape, np.float32)
    roto[:, 6:] = 1.0
    rgba = np.stack([roto, roto, roto, np.ones_like(roto)], axis=2)
    matte = _read_matte(str(write_image(tmp_path / "m.exr", rgba, channels=("R", "G", "B", "A"))),
                        None, None)
    np.testing.assert_array_equal(matte.pixels[..., 0], roto)
    only_alpha = np.ones(TRUTH.shape + (1,), np.float32)        # nothing else: A it is
    matte = _read_matte(str(write_image(tmp_path / "a.exr", only_alpha, channels=("A",))), None, None)
    assert float(matte.pixels.min()) == 1.0


def test_default_channel_order_and_opaque_alpha(tmp_path):
    rgba = np.zeros(TRUTH.shape + (4,), np.float32)
    rgba[..., 3] = TRUTH
    tri = read_trimap(write_image(tmp_path / "a.exr", rgba, channels=("R", "G", "B", "A")))
    assert tri.channel == "A"
    np.testing.assert_array_equal(tri.values, TRUTH)
    # Painted RGB trimap saved with an opaque alpha: A carries nothing, R is used.
    painted = np.repeat(TRUTH[..., None], 4, axis=2)
    painted[..., 3] = 1.0
    tri = read_trimap(write_image(tmp_path / "p.png", painted, channels=("R", "G", "B", "A"),
                                  fmt="uint8"))
    assert tri.channel == "R"
    np.testing.assert_array_equal(tri.values, TRUTH)
    # An explicit channel is never second-guessed.
    tri = read_trimap(tmp_path / "p.png", channel="A")
    assert tri.channel == "A" and not has_unknown(tri)


def test_trimap_from_plate_channel(tmp_path):
    px = np.concatenate([rng_pixels(6, 12, 3), TRUTH[..., None]], axis=2)
    path = write_image(tmp_path / "plate.exr", px, channels=("R", "G", "B", "matte.trimap"))
    tri = trimap_from_plate(path, "matte.trimap")
    np.testing.assert_array_equal(tri.values, TRUTH)
    with pytest.raises(ChannelError, match="matte.trimap, R|R, G, B, matte.trimap"):
        trimap_from_plate(path, "roto.trimap", frame=3)


def test_trimap_from_matte_band():
    yy, xx = np.mgrid[0:64, 0:64]
    matte = ((xx - 32) ** 2 + (yy - 32) ** 2 <= 15 ** 2).astype(np.float32)  # hard disk
    tri = trimap_from_matte(matte, band=3)
    dist = np.hypot(xx - 32, yy - 32)
    assert (tri[dist <= 11] == 1).all()        # deep inside stays foreground
    assert (tri[dist >= 20] == 0).all()        # far outside stays background
    ring = (dist > 13.5) & (dist < 16.5)       # within ~3 px of the edge
    assert (tri[ring] == 0.5).all()
    assert set(np.unique(tri)) == {0.0, 0.5, 1.0}
    # Soft matte values between lo and hi are unknown even with band 0.
    soft = np.linspace(0, 1, 21, dtype=np.float32)[None, :]
    np.testing.assert_array_equal(trimap_from_matte(soft, 0, lo=0.05, hi=0.95)[0],
                                  np.where(soft[0] <= 0.05, 0, np.where(soft[0] >= 0.95, 1, 0.5)))
    # The frame border is not an edge: an all-foreground matte stays known.
    assert (trimap_from_matte(np.ones((8, 8), np.float32), 3) == 1).all()
    with pytest.raises(TrimapError):
        trimap_from_matte(np.full((4, 4), np.nan, np.float32), 2)
    with pytest.raises(TrimapError):
        trimap_from_matte(matte, -1)


@pytest.mark.parametrize("tile", [16, 64])
def test_the_tiled_erosion_keeps_what_one_distance_transform_of_the_frame_gives(monkeypatch, tile):
    """Small tiles (many borders between them), regions touching the frame's edges and
    bands wider than a tile: the same pixels as the whole frame's distance transform."""
    from scipy import ndimage

    from nuke_hdmatt.imaging import trimaps
    monkeypatch.setattr(trimaps, "ERODE_TILE", tile)
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        radius = int(rng.integers(1, 40))
        noise = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(1, 10))
        region = noise > np.median(noise)
        pad = radius + 1
        whole = ndimage.distance_transform_edt(np.pad(region, pad, mode="edge"))
        np.testing.assert_array_equal(trimaps._erode_disk(region, radius),
                                      (whole > radius)[pad:-pad, pad:-pad])


def test_size_and_window_mismatch(tmp_path):
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(6, 12, 3)))
    small = read_trimap(write_image(tmp_path / "t.png", TRUTH[:, :8], channels=("Y",), fmt="uint8"))
    with pytest.raises(SizeMismatchError) as err:
        check_trimap(small, plate)
    assert "8x6" in str(err.value) and "12x6" in str(err.value) and "t.png" in str(err.value)
    shifted = read_trimap(write_image(tmp_path / "s.exr", TRUTH, channels=("Y",), data_origin=(2, 0)))
    with pytest.raises(SizeMismatchError, match="data window"):
        check_trimap(shifted, plate)
    check_trimap(read_trimap(write_image(tmp_path / "ok.exr", TRUTH, channels=("Y",))), plate)


def test_fit_full_frame_trimap_to_cropped_plate(tmp_path):
    plate = read_plate(write_image(tmp_path / "crop.exr", rng_pixels(3, 4, 3), data_origin=(6, 2),
                                   display=(0, 0, 12, 6)))
    full = read_trimap(write_image(tmp_path / "full.png", TRUTH, channels=("Y",), fmt="uint8"))
    fitted = fit_trimap_to_plate(full, plate)
    np.testing.assert_array_equal(fitted.values, TRUTH[2:5, 6:10])
    check_trimap(fitted, plate)
    with pytest.raises(SizeMismatchError, match="display window") as err:
        fit_trimap_to_plate(Trimap(TRUTH[:2, :2], (0, 0, 2, 2), (0, 0, 2, 2), "x.png"), plate)
    assert "2x2" in str(err.value) and "4x3" in str(err.value)


def test_trimap_bbox_inside_the_plates_display_window_is_filled_with_background(tmp_path):
    # Nuke semantics: outside its data window an image is 0, so the trimap's bbox may be
    # smaller than, or offset from, the plate's as long as both share one display window
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(6, 12, 3)))
    bbox = read_trimap(write_image(tmp_path / "b.exr", TRUTH[1:4, 2:9], channels=("Y",),
                                   data_origin=(2, 1), display=(0, 0, 12, 6)))
    fitted = fit_trimap_to_plate(bbox, plate)
    expect = np.zeros_like(TRUTH)
    expect[1:4, 2:9] = TRUTH[1:4, 2:9]
    np.testing.assert_array_equal(fitted.values, expect)
    check_trimap(fitted, plate)
    # a larger trimap of another format is refused, never cropped to its corner
    big = read_trimap(write_image(tmp_path / "big.png", np.pad(TRUTH, 4), channels=("Y",),
                                  fmt="uint8"))
    with pytest.raises(SizeMismatchError) as err:
        fit_trimap_to_plate(big, plate)
    assert "20x14" in str(err.value) and "12x6" in str(err.value) and "big.png" in str(err.value)


def test_nan_and_unsnapped_values_rejected(tmp_path):
    bad = TRUTH.copy()
    bad[1, 1] = np.nan
    path = write_image(tmp_path / "nan.exr", bad, channels=("Y",), fmt="float")
    with pytest.raises(TrimapError, match="NaN") as err:
        read_trimap(path)
    assert "nan.exr" in str(err.value)
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(6, 12, 3)))
    with pytest.raises(TrimapError, match="NaN"):
        check_trimap(bad, plate)
    with pytest.raises(TrimapError, match="snap"):
        check_trimap(TRUTH * 0.9, plate)


def test_no_unknown_detected(tmp_path):
    known = np.where(TRUTH == 0.5, 1.0, TRUTH).astype(np.float32)
    tri = read_trimap(write_image(tmp_path / "k.exr", known, channels=("Y",)))
    assert not has_unknown(tri)
    assert has_unknown(TRUTH)


def test_a_plate_given_as_the_trimap_is_refused(tmp_path):
    """Plate and trimap swapped (or a photo named as the trimap) must stop at once, naming
    the file, not run for minutes on an unknown region covering most of the frame; soft
    edges, overshoot and blurred trimaps still snap."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:80]
    photo = (0.5 + 0.3 * np.sin(xx / 7) * np.cos(yy / 5) + 0.1 * rng.random((60, 80))).astype(np.float32)
    path = write_image(tmp_path / "plate.png", np.repeat(photo[..., None], 3, axis=2),
                       channels=("R", "G", "B"), fmt="uint8")
    with pytest.raises(TrimapError, match="does not look like a trimap") as err:
        read_trimap(path)
    assert "plate.png" in str(err.value)
    ramp = np.repeat(np.linspace(0, 1, 80, dtype=np.float32)[None], 60, axis=0)
    with pytest.raises(TrimapError, match="does not look like a trimap"):
        snap_trimap(ramp)
    # a trimap blurred across its levels is still one
    from scipy import ndimage
    wide = np.repeat(np.repeat(TRUTH, 8, axis=0), 8, axis=1)
    blurred = ndimage.gaussian_filter(wide, 2)
    assert level_share(blurred) >= LEVEL_SHARE
    np.testing.assert_array_equal(snap_trimap(blurred)[:, ::8][::8][:, [0, 6, 11]],
                                  TRUTH[:, [0, 6, 11]])
