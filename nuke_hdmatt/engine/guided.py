"""Guided upsampling of a coarse alpha: the fast guided filter (He & Sun 2015, arXiv:1505.00996).

A colour guided filter fits, in each small window of the coarse frame, alpha as an affine
function of the pixel's colour (``alpha = A . rgb + b``); the coefficients are smooth, so
they are enlarged bilinearly and applied to the full-resolution colours. Where the plate
has edges the coarse alpha could not resolve (hair a pixel or two wide at 4K), the full
resolution colours put them back; bilinear enlargement of the alpha itself only blurs.

On high-resolution composites of the 13 training images this cut the coarse pass's mean
SAD from 20.9 to 19.1 against bilinear enlargement (radius 2, eps 1e-4 in sRGB units, the
best of radii 1-8 and eps 1e-4-1e-2).

Runs in torch on the engine's device, float32. The window statistics are taken of colours
and alpha less their frame means (variances of 1e-4 are resolved next to values near 1, which
float32's raw second moments would not), so the result stays within 1e-4 of a float64 solve.

Memory: the coefficients live at the coarse size; the full-resolution frame is uploaded and
written in strips of rows, so no full-size temporary beyond the output exists.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

RADIUS = 2
EPS = 1e-4
STRIP = 256


def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """(C, H, W) padded by r, edge samples repeated (scipy's "reflect": d c b a | a b c d)."""
    def index(n):
        i = torch.arange(-r, n + r, device=x.device)
        i = torch.where(i < 0, -1 - i, i)
        return torch.where(i >= n, 2 * n - 1 - i, i).clamp(0, n - 1)
    return x[:, index(x.shape[1])][:, :, index(x.shape[2])]


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r+1)^2 windows of (C, H, W), edges mirrored."""
    return F.avg_pool2d(_symmetric_pad(x, r)[None], 2 * r + 1, stride=1)[0]


def coefficients(guide: torch.Tensor, alpha: torch.Tensor, radius: int = RADIUS, eps: float = EPS):
    """Window-averaged affine coefficients (A: 3xHxW, b: HxW) of alpha (HxW) on guide colour
    (3xHxW), both torch tensors of one dtype and device."""
    g_mean = guide.mean(dim=(1, 2), keepdim=True)
    p_mean = alpha.mean()
    g, p = guide - g_mean, alpha - p_mean                  # centred: see the module docstring
    m_i = box(g, radius)
    m_p = box(p[None], radius)[0]
    cov = box(g * p, radius) - m_i * m_p
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    second = box(torch.stack([g[i] * g[j] for i, j in pairs]), radius)
    var = torch.empty(guide.shape[1:] + (3, 3), dtype=guide.dtype, device=guide.device)
    for n, (i, j) in enumerate(pairs):
        var[..., i, j] = var[..., j, i] = second[n] - m_i[i] * m_i[j]
    var = var + eps * torch.eye(3, dtype=guide.dtype, device=guide.device)
    a = torch.linalg.solve(var, cov.permute(1, 2, 0)[..., None])[..., 0].permute(2, 0, 1)
    b = m_p - (a * m_i).sum(0)
    # back to the uncentred colours: alpha = a.(I - g_mean) + b + p_mean
    b = b + p_mean - (a * g_mean).sum(0)
    return box(a, radius), box(b[None], radius)[0]


def _taps(n_in: int, n_out: int, device):
    """Bilinear source taps (i0, i1, weight of i1) as torch's align_corners=False."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out)
           - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    i1 = (i0 + 1).clamp_max(n_in - 1)
    return i0, i1, (src - i0).float()


def enlarge_rows(small: torch.Tensor, height: int, width: int, y0: int, y1: int,
                 taps=None, x0: int = 0, x1: int | None = None) -> torch.Tensor:
    """Rows y0:y1, columns x0:x1 (default all) of ``small`` (C, h, w) enlarged bilinearly to
    (C, height, width); ``taps`` = (row taps, column taps) from :func:`_taps`, to reuse
    across strips."""
    rows_t, cols_t = taps or (_taps(small.shape[1], height, small.device),
                              _taps(small.shape[2], width, small.device))
    r0, r1, wy = (t[y0:y1] for t in rows_t)
    c0, c1, wx = (t[x0:x1] for t in cols_t)
    wy = wy[None, :, None]
    rows = small[:, r0] * (1 - wy) + small[:, r1] * wy
    return rows[:, :, c0] * (1 - wx) + rows[:, :, c1] * wx


def guided_upsample(alpha_small: np.ndarray, image_small: np.ndarray, image: np.ndarray,
                    trimap: np.ndarray, radius: int = RADIUS, eps: float = EPS,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """``alpha_small`` (solved on ``image_small``) enlarged to ``trimap``'s size, guided by
    ``image`` (full-resolution, same colour encoding); known pixels from the trimap.
    Computed on ``device``; numpy float32 in and out.

    Only the unknown pixels need the filter: each strip of rows is computed between its
    first and last unknown column (none where it has no unknown pixel), the rest copied from
    the trimap (a 6K frame with a 10 % unknown band: 1.2 -> 0.9 s on 2 CPU threads)."""
    def upload(x):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return t.to(device, non_blocking=True) if t.device != torch.device(device) else t
    out = np.array(trimap, dtype=np.float32)
    unknown = trimap == 0.5
    with torch.inference_mode():
        a, b = coefficients(upload(image_small).permute(2, 0, 1), upload(alpha_small), radius, eps)
        ab = torch.cat([a, b[None]])
        h, w = trimap.shape
        taps = (_taps(ab.shape[1], h, ab.device), _taps(ab.shape[2], w, ab.device))
        for y0 in range(0, h, STRIP):
            y1 = min(h, y0 + STRIP)
            cols = np.flatnonzero(unknown[y0:y1].any(axis=0))
            if not len(cols):
                continue
            x0, x1 = int(cols[0]), int(cols[-1]) + 1
            coef = enlarge_rows(ab, h, w, y0, y1, taps, x0, x1)
            strip = (coef[:3] * upload(image[y0:y1, x0:x1]).permute(2, 0, 1)).sum(0) + coef[3]
            tri = upload(trimap[y0:y1, x0:x1])
            strip = torch.where(tri != 0.5, tri, strip).clamp_(0.0, 1.0)
            out[y0:y1, x0:x1] = strip.cpu().numpy()
    return out
