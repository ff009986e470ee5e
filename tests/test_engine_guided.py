"""Guided upsampling of the coarse alpha (the cascade prior)."""

import numpy as np
import torch
import torch.nn.functional as F

from nuke_hdmatt.engine import guided
from nuke_hdmatt.engine.prior import upsample
from nuke_hdmatt.training.resampling import resize_area


def _torch_bilinear(x, h, w):
    t = torch.from_numpy(x)
    t = t.permute(2, 0, 1)[None] if x.ndim == 3 else t[None, None]
    out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0]
    return (out.permute(1, 2, 0) if x.ndim == 3 else out[0]).numpy()


def test_strips_enlarge_exactly_like_torch_bilinear():
    rng = np.random.default_rng(0)
    for shape, (h, w) in (((1, 7, 11), (30, 41)), ((3, 9, 5), (23, 17)), ((1, 4, 4), (4, 4))):
        small = torch.from_numpy(rng.random(shape).astype(np.float32))
        whole = torch.cat([guided.enlarge_rows(small, h, w, y, min(h, y + 6)) for y in range(0, h, 6)], 1)
        want = F.interpolate(small[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        assert torch.allclose(whole, want, atol=1e-6)


def _reference_guided_upsample(alpha_small, image_small, image, trimap, r=guided.RADIUS, eps=guided.EPS):
    """The float64 numpy/scipy implementation the torch one replaced (engine 0.2.0)."""
    from scipy import ndimage

    def box(x):
        return ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1) + (1,) * (x.ndim - 2), mode="reflect")
    g, p = image_small.astype(np.float64), alpha_small.astype(np.float64)
    m_i, m_p = box(g), box(p)
    cov = box(g * p[..., None]) - m_i * m_p[..., None]
    var = box(g[..., :, None] * g[..., None, :]) - m_i[..., :, None] * m_i[..., None, :]
    a = np.linalg.solve(var + eps * np.eye(3), cov[..., None])[..., 0]
    b = m_p - (a * m_i).sum(-1)
    a, b = box(a), box(b)
    h, w = trimap.shape
    a_big = np.stack([_torch_bilinear(np.ascontiguousarray(a[..., c]), h, w) for c in range(3)], -1)
    out = (a_big * image).sum(-1) + _torch_bilinear(b, h, w)
    known = trimap != 0.5
    out[known] = trimap[known]
    return np.clip(out, 0, 1)


def test_torch_float32_matches_the_float64_reference_on_a_real_plate():
    """Within 1e-3 of the numpy float64 filter it replaced, strips and all (several strips,
    dark and saturated colours, flat regions where the window variance is below eps)."""
    rng = np.random.default_rng(4)
    h, w = 2 * guided.STRIP + 37, 301
    image = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    image = np.clip(_torch_bilinear(image, h, w) + 0.02 * rng.standard_normal((h, w, 3)), 0, 1
                    ).astype(np.float32)
    image[:60, :80] = 0.0                                   # flat black corner
    image[-60:, -80:] = [1.0, 0.99, 0.98]                  # flat near-white corner
    alpha = np.clip(image @ np.array([0.6, -0.3, 0.5], np.float32) + 0.2 * np.sin(np.arange(w) / 9), 0, 1)
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:20] = 0.0
    trimap[-20:] = 1.0
    small_h, small_w = h // 3, w // 3
    image_small, alpha_small = resize_area(image, small_h, small_w), resize_area(alpha, small_h, small_w)
    got = guided.guided_upsample(alpha_small, image_small, image, trimap)
    want = _reference_guided_upsample(alpha_small, image_small, image, trimap)
    assert got.dtype == np.float32 and got.shape == (h, w)
    assert np.abs(got - want).max() < 1e-3, np.abs(got - want).max()
    assert np.array_equal(got[trimap != 0.5], trimap[trimap != 0.5])


def test_only_strips_and_columns_with_unknown_pixels_are_filtered_the_same_as_all():
    rng = np.random.default_rng(6)
    h, w = 3 * guided.STRIP + 11, 290
    image = rng.random((h, w, 3)).astype(np.float32)
    trimap = np.zeros((h, w), np.float32)
    trimap[:, 200:] = 1.0
    trimap[guided.STRIP + 5:guided.STRIP + 40, 150:170] = 0.5    # one island in strip 1
    trimap[-3:, 7] = 0.5                                          # a speck in the last strip
    alpha_small = resize_area(rng.random((h, w)).astype(np.float32), h // 4, w // 4)
    image_small = resize_area(image, h // 4, w // 4)
    got = guided.guided_upsample(alpha_small, image_small, image, trimap)
    want = _reference_guided_upsample(alpha_small, image_small, image, trimap)
    assert np.abs(got - want).max() < 1e-3
    assert np.array_equal(got[trimap != 0.5], trimap[trimap != 0.5])


def _edge_frame(n=256, factor=4):
    """A hard diagonal colour edge, alpha following it exactly."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    alpha = np.clip(xx - 0.6 * yy - 60.3, 0, 1).astype(np.float32)
    fg, bg = np.array([0.9, 0.6, 0.2], np.float32), np.array([0.1, 0.2, 0.7], np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    trimap = np.full((n, n), 0.5, np.float32)
    trimap[:, :20] = 0.0
    trimap[:, -8:] = 1.0
    small = n // factor
    return image, trimap, alpha, resize_area(image, small, small), resize_area(alpha, small, small)


def test_guided_upsampling_restores_an_edge_the_coarse_alpha_blurred():
    image, trimap, alpha, image_small, alpha_small = _edge_frame()
    out = guided.guided_upsample(alpha_small, image_small, image, trimap)
    plain = upsample(alpha_small, trimap)
    unknown = trimap == 0.5
    assert out.dtype == np.float32 and out.shape == alpha.shape
    assert np.array_equal(out[~unknown], trimap[~unknown])
    err, err_plain = np.abs(out - alpha)[unknown].sum(), np.abs(plain - alpha)[unknown].sum()
    assert err < 0.2 * err_plain


def test_alpha_that_is_affine_in_colour_is_reproduced():
    rng = np.random.default_rng(1)
    image = np.clip(rng.random((64, 64, 3)) * 0.5 + 0.25, 0, 1).astype(np.float32)
    smooth = np.stack([np.kron(rng.random((8, 8)), np.ones((8, 8))) for _ in range(3)], -1)
    image = (0.5 * image + 0.5 * smooth).astype(np.float32)
    alpha = np.clip(image @ np.array([0.5, 0.3, 0.2], np.float32), 0, 1)
    trimap = np.full(alpha.shape, 0.5, np.float32)
    out = guided.guided_upsample(resize_area(alpha, 32, 32), resize_area(image, 32, 32), image, trimap,
                                 eps=1e-8)
    assert np.abs(out - alpha).mean() < 0.01


def test_detail_outside_its_range_is_refused():
    import sys
    from pathlib import Path

    import pytest
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_runner import make_engine
    for bad in (-0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="--detail"):
            make_engine("D", detail=bad)
    for good in (0.0, 1.0):        # 0: the guided-upsampled coarse alpha alone (--detail 0)
        assert make_engine("D", detail=good).params()["detail"] == good
