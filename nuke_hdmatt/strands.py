"""Hair strands as coverage: the splat shared by the demo plate and the training generator.

A strand is marched as points a fraction of a pixel apart; each point deposits the area of
strand it stands for (width x step) over its four nearest pixels, bilinearly. Alpha is then
``1 - exp(-density)`` (the transmittance of overlapping random occluders), so strands
narrower than a pixel give the fractional alphas real hair has, and the colour-weighted
density over the density is the strands' mean colour: colour, alpha and composite agree.
"""

from __future__ import annotations

import numpy as np

__all__ = ["splat_bilinear"]


def splat_bilinear(y, x, amount, colour, shape) -> tuple[np.ndarray, np.ndarray]:
    """Deposit points over their four nearest pixels.

    Parameters
    ----------
    y, x : (N,) float
        Point positions in pixels (pixel (i, j) holds y in [i, i + 1)).
    amount : (N,) float
        What each point deposits (strand area); split bilinearly over the four pixels.
    colour : (N, 3) float
        Each point's colour; deposited weighted by its amount.
    shape : (H, W)

    Returns
    -------
    density : float64 (H, W)
    coloured : float64 (H, W, 3)
        The sums of amount and of amount x colour. Corners outside the frame are dropped.
    """
    h, w = shape
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    density = np.zeros(h * w, np.float64)
    coloured = np.zeros((3, h * w), np.float64)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        py, px = y0 + dy, x0 + dx
        inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
        idx = py[inside] * w + px[inside]
        deposit = (amount * weight)[inside]
        density += np.bincount(idx, deposit, h * w)
        for c in range(3):
            coloured[c] += np.bincount(idx, deposit * colour[inside, c], h * w)
    return density.reshape(h, w), np.moveaxis(coloured.reshape(3, h, w), 0, -1)
