"""Metrics against values worked out by hand from the DIM / alphamatting definitions."""

import numpy as np
import pytest

from nuke_hdmatt import metrics


def _trimap_4x4():
    # Top row known background, bottom row known foreground, two middle rows unknown.
    t = np.full((4, 4), 128, np.uint8)
    t[0] = 0
    t[3] = 255
    return t


def test_sad_and_mse_on_a_4x4_case():
    gt = np.zeros((4, 4))
    pred = np.zeros((4, 4))
    pred[1] = [0.5, 0.25, 0.0, 0.0]     # |err| 0.5 + 0.25
    pred[2] = [0.0, 0.0, 1.0, 0.0]      # |err| 1.0
    pred[0] = 1.0                       # known region: must not count
    pred[3] = 0.3
    t = _trimap_4x4()
    assert metrics.sad(pred, gt, t) == pytest.approx((0.5 + 0.25 + 1.0) / 1000)
    # 8 unknown pixels; squared errors 0.25 + 0.0625 + 1.0
    assert metrics.mse(pred, gt, t) == pytest.approx((0.25 + 0.0625 + 1.0) / 8)


def test_float_trimap_from_8bit_png_counts_unknown():
    t8 = _trimap_4x4()
    tf = t8.astype(np.float32) / 255.0      # unknown = 0.50196
    assert np.array_equal(metrics.unknown_mask(t8), metrics.unknown_mask(tf))
    assert metrics.unknown_mask(tf).sum() == 8
    tf2 = np.where(t8 == 128, 0.5, t8 / 255.0)
    assert np.array_equal(metrics.unknown_mask(tf2), metrics.unknown_mask(t8))


def test_mse_without_unknown_pixels_is_zero():
    t = np.zeros((3, 3), np.uint8)
    assert metrics.mse(np.ones((3, 3)), np.zeros((3, 3)), t) == 0.0


def test_grad_of_constant_maps_is_zero():
    t = np.full((16, 16), 128, np.uint8)
    assert metrics.grad(np.full((16, 16), 0.3), np.full((16, 16), 0.7), t) == 0.0


def test_grad_kernel_is_the_reference_gaussgradient():
    hx = metrics._gaussian_gradient_kernel(1.4)
    # halfsize = ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(3.62) = 4
    assert hx.shape == (9, 9)
    assert np.sum(hx * hx) == pytest.approx(1.0)
    assert np.allclose(hx, -hx[:, ::-1])        # odd along x
    assert np.allclose(hx, hx[::-1, :])         # even along y


def test_grad_on_a_ramp_matches_the_kernel_moment():
    h, w = 20, 21
    ramp = np.tile(np.arange(w, dtype=np.float64), (h, 1))      # min-max -> x / 20
    gt = np.zeros((h, w))
    t = np.zeros((h, w), np.uint8)
    t[6:14, 6:15] = 128           # interior: the 9x9 kernel never reaches the border
    # Convolving a ramp of slope s with an odd kernel gives s * |sum_v v * colsum(v)|
    # (colsum = the kernel summed over y), the same at every interior pixel.
    hx = metrics._gaussian_gradient_kernel(1.4)
    v = np.arange(-4, 5)
    magnitude = abs(np.sum(v * hx.sum(axis=0))) / (w - 1)
    expected = 8 * 9 * magnitude ** 2 / 1000
    assert metrics.grad(ramp, gt, t) == pytest.approx(expected, rel=1e-9)
    # min-max normalisation: scaling the prediction changes nothing
    assert metrics.grad(ramp * 0.01, gt, t) == pytest.approx(expected, rel=1e-9)


def test_conn_on_a_1x4_map():
    # gt = [1, 1, 0, 0]; pred = [1, 0.55, 0, 0].
    # Both >= t: pixels {0, 1} for t <= 0.5, {0} for t >= 0.6, so levels are
    # l = [1, 0.5, 0, 0]. pred - l = [0, 0.05, 0, 0] (all < theta): phi_p = 1 everywhere;
    # gt - l = [0, 0.5, 0, 0]: phi_g = [1, 0.5, 1, 1]. Conn = 0.5 / 1000.
    gt = np.array([[1.0, 1.0, 0.0, 0.0]])
    pred = np.array([[1.0, 0.55, 0.0, 0.0]])
    t = np.full((1, 4), 128, np.uint8)
    assert metrics.conn(pred, gt, t) == pytest.approx(0.5 / 1000)


def test_conn_uses_4_connectivity():
    # Diagonal neighbours are separate components: pixel (1,1) leaves the largest
    # component at the first threshold, so its level is 0. pred - 0 = 0.8 >= theta ->
    # phi_p = 0.2; gt - 0 = 1 -> phi_g = 0. Pixel (0,0) keeps level 1: phi 1 for both.
    gt = np.array([[1.0, 0.0], [0.0, 1.0]])
    pred = np.array([[1.0, 0.0], [0.0, 0.8]])
    t = np.array([[255, 0], [0, 128]], np.uint8)
    assert metrics.conn(pred, gt, t) == pytest.approx(0.2 / 1000)


def test_identical_maps_score_zero_everywhere():
    rng = np.random.default_rng(0)
    a = rng.random((12, 12))
    t = np.full((12, 12), 128, np.uint8)
    assert metrics.all_metrics(a, a, t) == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        metrics.sad(np.zeros((3, 3)), np.zeros((3, 4)), np.zeros((3, 3)))
