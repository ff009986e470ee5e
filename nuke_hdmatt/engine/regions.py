"""Trimap regions at feature resolution (1/8)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

UNKNOWN, FOREGROUND, BACKGROUND = 0, 1, 2
_EPS = 1e-3


def region_masks(trimap: torch.Tensor, stride: int = 8) -> torch.Tensor:
    """Boolean (B, 3, h, w) masks [U, F, B] of a (B, 1, H, W) trimap in {0, 0.5, 1}.

    A feature cell is F (or B) only if every pixel under it is; any mixture or
    unknown pixel makes it U, so no unknown pixel is ever hidden from the query.
    """
    hi = F.max_pool2d(trimap, stride, stride)
    lo = -F.max_pool2d(-trimap, stride, stride)
    fg = lo >= 1 - _EPS
    bg = hi <= _EPS
    unknown = ~(fg | bg)
    return torch.cat([unknown, fg, bg], dim=1)


def max_unknown_cells(trimaps: np.ndarray, stride: int = 8) -> int:
    """The most U cells of :func:`region_masks` in any of (B, H, W) numpy trimap patches,
    counted on the host (so attention need not read the count off the device)."""
    b, h, w = trimaps.shape
    cells = trimaps[:, :h // stride * stride, :w // stride * stride].reshape(
        b, h // stride, stride, w // stride, stride)
    known = (cells.min(axis=(2, 4)) >= 1 - _EPS) | (cells.max(axis=(2, 4)) <= _EPS)
    return int((~known).sum(axis=(1, 2)).max())
