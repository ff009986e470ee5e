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
    for shape, (h, w) in (((7, 11), (30, 41)), ((9, 5, 3), (23, 17)), ((4, 4), (4, 4))):
        small = rng.random(shape).astype(np.float32)
        whole = np.concatenate([guided.enlarge_rows(small, h, w, y, min(h, y + 6)) for y in range(0, h, 6)])
        assert np.allclose(whole, _torch_bilinear(small, h, w), atol=1e-6)


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


def test_cascade_step_outside_its_range_is_refused():
    import sys
    from pathlib import Path
    import pytest
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_runner import make_engine
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="cascade_step"):
            make_engine("D", cascade_step=bad)
    assert make_engine("D", cascade_step=1.0).params()["cascade_step"] == 1.0
