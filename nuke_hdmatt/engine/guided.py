"""Guided upsampling of a coarse alpha: the fast guided filter (He & Sun 2015, arXiv:1505.00996).

A colour guided filter fits, in each small window of the coarse frame, alpha as an affine
function of the pixel's colour (``alpha = A . rgb + b``); the coefficients are smooth, so
they are enlarged bilinearly and applied to the full-resolution colours. Where the plate
has edges the coarse alpha could not resolve (hair a pixel or two wide at 4K), the full
resolution colours put them back; bilinear enlargement of the alpha itself only blurs.

On high-resolution composites of the 13 training images this cut the coarse pass's mean
SAD from 20.9 to 19.1 against bilinear enlargement (radius 2, eps 1e-4 in sRGB units, the
best of radii 1-8 and eps 1e-4-1e-2).

Memory: the coefficients live at the coarse size; the full-resolution frame is written in
strips of rows, so no full-size temporary beyond the output exists.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

RADIUS = 2
EPS = 1e-4
STRIP = 256


def _box(x: np.ndarray, r: int) -> np.ndarray:
    size = (2 * r + 1, 2 * r + 1) + (1,) * (x.ndim - 2)
    return ndimage.uniform_filter(x, size=size, mode="reflect")


def coefficients(guide: np.ndarray, alpha: np.ndarray, radius: int = RADIUS, eps: float = EPS):
    """Window-averaged affine coefficients (A: HxWx3, b: HxW) of alpha on guide colour."""
    guide = guide.astype(np.float64)
    alpha = alpha.astype(np.float64)
    m_i = _box(guide, radius)
    m_p = _box(alpha, radius)
    cov = _box(guide * alpha[..., None], radius) - m_i * m_p[..., None]
    var = _box(guide[..., :, None] * guide[..., None, :], radius) - m_i[..., :, None] * m_i[..., None, :]
    a = np.linalg.solve(var + eps * np.eye(3), cov[..., None])[..., 0]
    b = m_p - (a * m_i).sum(-1)
    return _box(a, radius).astype(np.float32), _box(b, radius).astype(np.float32)


def _taps(n_in: int, n_out: int):
    """Bilinear source taps (i0, i1, weight of i1) as torch's align_corners=False."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def enlarge_rows(small: np.ndarray, height: int, width: int, y0: int, y1: int,
                 taps=None) -> np.ndarray:
    """Rows y0:y1 of ``small`` enlarged bilinearly to (height, width[, C]); ``taps`` =
    (row taps, column taps) from :func:`_taps`, to reuse across strips."""
    rows_t, cols_t = taps or (_taps(small.shape[0], height), _taps(small.shape[1], width))
    r0, r1, wy = (t[y0:y1] for t in rows_t)
    c0, c1, wx = cols_t
    expand = (slice(None), None) + (None,) * (small.ndim - 2)
    rows = small[r0] * (1 - wy[expand]) + small[r1] * wy[expand]
    xw = wx[(None, slice(None)) + (None,) * (small.ndim - 2)]
    return rows[:, c0] * (1 - xw) + rows[:, c1] * xw


def guided_upsample(alpha_small: np.ndarray, image_small: np.ndarray, image: np.ndarray,
                    trimap: np.ndarray, radius: int = RADIUS, eps: float = EPS) -> np.ndarray:
    """``alpha_small`` (solved on ``image_small``) enlarged to ``trimap``'s size, guided by
    ``image`` (full-resolution, same colour encoding); known pixels from the trimap."""
    a, b = coefficients(image_small, alpha_small, radius, eps)
    h, w = trimap.shape
    taps = (_taps(a.shape[0], h), _taps(a.shape[1], w))
    out = np.empty((h, w), np.float32)
    for y0 in range(0, h, STRIP):
        y1 = min(h, y0 + STRIP)
        out[y0:y1] = ((enlarge_rows(a, h, w, y0, y1, taps) * image[y0:y1]).sum(-1)
                      + enlarge_rows(b, h, w, y0, y1, taps))
    known = trimap != 0.5
    out[known] = trimap[known]
    return np.clip(out, 0.0, 1.0, out=out)
