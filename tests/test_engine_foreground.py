"""Foreground estimation (engine/foreground.py): the multilevel solve in torch, tiled."""

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine.foreground import estimate_foreground
from nuke_hdmatt.errors import Cancelled


def _scene(h=240, w=330, highlight=1.0):
    """A soft, wavy edge between two smooth colour fields (linear light)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.clip((xx - 0.4 * w) / 60 + 0.3 * np.sin(yy / 7), 0, 1).astype(np.float32)
    fg = np.stack([0.8 + 0.1 * np.sin(xx / 30), 0.5 + 0.2 * np.cos(yy / 40),
                   0.2 + 0 * xx], -1).astype(np.float32) * highlight
    bg = np.stack([0.1 + 0 * xx, 0.3 + 0.2 * np.sin(yy / 20 + xx / 50),
                   0.7 + 0 * xx], -1).astype(np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha, fg


def _recomposite_error(f, fg, alpha):
    """Mean |error| over the unknown pixels of F over a new (yellow) background."""
    new_bg = np.array([0.9, 0.9, 0.1], np.float32)
    a = alpha[..., None]
    mixed = (alpha > 0) & (alpha < 1)
    return float(np.abs(a * f + (1 - a) * new_bg - (a * fg + (1 - a) * new_bg))[mixed].mean())


def test_recovers_the_foreground_far_better_than_the_plate_and_as_well_as_pymatting():
    pymatting = pytest.importorskip("pymatting")
    image, alpha, fg = _scene()
    ours = _recomposite_error(estimate_foreground(image, alpha), fg, alpha)
    plate = _recomposite_error(image, fg, alpha)
    theirs = _recomposite_error(pymatting.estimate_foreground_ml(
        image.astype(np.float64), alpha.astype(np.float64)), fg, alpha)
    assert ours < 0.15 * plate
    assert ours <= 1.05 * theirs


def test_tiles_agree_with_the_whole_frame_solve():
    image, alpha, _ = _scene(300, 420)
    whole = estimate_foreground(image, alpha)
    tiled = estimate_foreground(image, alpha, base_side=64, tile=96)
    mixed = (alpha > 0) & (alpha < 1)
    diff = np.abs(whole - tiled)[mixed]
    assert diff.mean() < 1e-3 and diff.max() < 0.03


def test_plate_is_the_foreground_where_alpha_is_one_and_highlights_survive():
    image, alpha, fg = _scene(highlight=4.0)  # scene-linear values up to 3.6
    f = estimate_foreground(image, alpha, base_side=64, tile=128)
    solid = alpha >= 1
    assert np.array_equal(f[solid], image[solid])
    assert f.dtype == np.float32 and f.shape == image.shape
    mixed = (alpha > 0.2) & (alpha < 1)
    assert f[mixed].max() > 1.5  # not clipped to [0, 1] as PyMatting does
    assert _recomposite_error(f, fg, alpha) < 0.15 * _recomposite_error(image, fg, alpha)


def test_tiles_without_mixed_pixels_are_skipped_and_progress_counts_tiles():
    image, alpha, _ = _scene(256, 512)
    alpha[:, :] = (alpha > 0.5).astype(np.float32)  # hard edge only: nothing to solve
    alpha[100:110, 300:310] = 0.5
    calls = []
    f = estimate_foreground(image, alpha, base_side=64, tile=64,
                            progress=lambda d, t, s: calls.append((d, t, s)))
    levels = len(calls) - 32                 # the whole levels up to 64 px, then 32 tiles
    assert levels >= 1 and calls[-1][0] == calls[-1][1] and {t for _, t, _ in calls} == {calls[-1][1]}
    assert [d for d, _, _ in calls] == sorted({d for d, _, _ in calls})     # only goes forward
    assert [d - calls[levels - 1][0] for d, _, _ in calls[levels:]] == list(range(1, 33))
    assert np.array_equal(f[alpha >= 1], image[alpha >= 1])
    assert np.isfinite(f).all()


def test_cancel_stops_between_tiles():
    image, alpha, _ = _scene()
    with pytest.raises(Cancelled):
        estimate_foreground(image, alpha, base_side=64, tile=64, cancel=lambda: True)


def test_a_frame_solved_whole_reports_its_levels_and_can_be_cancelled():
    image, alpha, _ = _scene(96, 128)                  # within base_side: no tiles
    calls = []
    estimate_foreground(image, alpha, progress=lambda d, t, s: calls.append((d, t, s)))
    assert len(calls) == 8 and calls[-1] == (8, 8, "foreground")   # levels 1 to 128 px
    polls = []
    with pytest.raises(Cancelled):
        estimate_foreground(image, alpha, cancel=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4                             # stopped between levels


def test_engine_runs_it_on_its_device():
    from nuke_hdmatt.engine import Engine
    eng = Engine.load(device="cpu")
    image, alpha, fg = _scene()
    f = eng.foreground(image, alpha)
    assert _recomposite_error(f, fg, alpha) < 0.15 * _recomposite_error(image, fg, alpha)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image, alpha, _ = _scene()
    cpu = estimate_foreground(image, alpha, base_side=64, tile=96)
    gpu = estimate_foreground(image, alpha, base_side=64, tile=96, device="cuda")
    assert np.abs(cpu - gpu).max() < 1e-3


@pytest.mark.parametrize("glint", [50.0, 65504.0])
def test_a_glint_in_a_soft_edge_does_not_light_up_its_neighbours(glint):
    """One bright pixel in a soft edge (a specular highlight in hair; an inf plate value
    becomes half's largest) spread F above 10 over hundreds of partly covered pixels: a
    composite over a new background glowed around it. F never brings a pixel more light
    than it has."""
    h = w = 128
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(yy - 64, xx - 64)
    alpha = np.clip((48 - r) / 12, 0, 1).astype(np.float32)          # a soft ring edge
    fg = np.stack([0.6 + 0.2 * np.sin(xx / 9), 0.4 + 0.1 * np.cos(yy / 7),
                   0.3 + 0 * xx], -1).astype(np.float32)
    bg = np.stack([0.1 + 0.1 * yy / h, 0.2 + 0 * xx, 0.3 * xx / w], -1).astype(np.float32)
    gy, gx = 64, 64 + 42                                              # alpha 0.5 there
    fg[gy, gx] = glint
    plate = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    est = estimate_foreground(plate, alpha)
    partly = (alpha > 0.01) & (alpha < 1)
    partly[gy, gx] = False
    assert int(((est > 10).any(-1) & partly).sum()) == 0
    # re-composite error over the true background on the other partly covered pixels:
    # max 1.63 / 2094, mean 0.008 / 2.75 unbounded; 0.33 / 0.40 and 0.007 / 0.011 now
    error = np.abs(alpha[..., None] * est + (1 - alpha[..., None]) * bg - plate)[partly]
    assert float(error.max()) < 0.5 and float(error.mean()) < 0.02
    # the bound never cuts a true foreground: without the glint, as good as before
    fg[gy, gx] = fg[gy, gx - 1]
    plate = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    est = estimate_foreground(plate, alpha)
    assert float(np.abs(alpha[..., None] * (est - fg))[partly].mean()) < 0.01


def test_the_mean_colour_over_a_mask_is_the_gathered_pixels_mean():
    from nuke_hdmatt.engine.foreground import _mean_where
    rng = np.random.default_rng(5)
    image = (rng.random((300, 400, 3), dtype=np.float32) * 4 - 1).astype(np.float32)
    mask = rng.random((300, 400)) > 0.7
    np.testing.assert_array_equal(_mean_where(image, mask), image[mask].mean(0))
    np.testing.assert_array_equal(_mean_where(image, np.zeros_like(mask)), np.zeros(3, np.float32))


def test_the_foreground_is_held_within_the_light_on_partial_pixels_only():
    from nuke_hdmatt.engine.foreground import _within_the_light
    rng = np.random.default_rng(6)
    image = rng.random((70, 90, 3), dtype=np.float32)
    alpha = rng.choice(np.float32([0, 1, 0.3, 0.8]), size=(70, 90))
    f = (rng.random((70, 90, 3), dtype=np.float32) * 4).astype(np.float32)
    lo = -0.05
    a = alpha[..., None]
    bound = (image - (1 - a) * lo) / np.maximum(a, 1e-6)
    want = np.where((a > 0) & (a < 1), np.minimum(f, bound), f)
    np.testing.assert_array_equal(_within_the_light(f.copy(), image, alpha, lo, rows=16), want)


def test_an_empty_frame_is_an_empty_foreground_and_a_nan_alpha_is_refused():
    empty = estimate_foreground(np.zeros((0, 5, 3), np.float32), np.zeros((0, 5), np.float32))
    assert empty.shape == (0, 5, 3)
    image, alpha, _ = _scene(32, 32)
    alpha[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_foreground(image, alpha)
