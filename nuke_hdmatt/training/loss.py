"""The paper's training loss (DIM): alpha + composition, weighted by the blend weights."""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-6


def patch_weights(size: int, overlap: int) -> torch.Tensor:
    """Blend weights of an interior patch (ramps on all four sides), (size, size) float32.

    The same weights stitch patches at inference, so pixels near a patch border,
    which inference mostly takes from the neighbouring patch, count less."""
    from ..engine.tiling import PatchGrid
    grid = PatchGrid(3 * size, 3 * size, size, overlap)
    return torch.from_numpy(np.ascontiguousarray(grid.weights(1, 1)))


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB decoding (the transfer function OCIO's sRGB encoding inverts)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def matting_loss(pred, alpha, image, fg, bg, trimap, weights) -> torch.Tensor:
    """0.5 * L_alpha + 0.5 * L_comp over the unknown region, weighted.

    pred, alpha, trimap: (B,1,H,W); image, fg, bg: (B,3,H,W) in the network's sRGB
    input space; weights (H,W). The composition is checked in linear light, where
    the training composites were made.
    """
    unknown = ((trimap > 0.25) & (trimap < 0.75)).float()
    w = unknown * weights[None, None]
    denom = w.sum().clamp_min(1.0)
    l_alpha = torch.sqrt((pred - alpha) ** 2 + EPS ** 2)
    comp = pred * srgb_to_linear(fg) + (1 - pred) * srgb_to_linear(bg)
    l_comp = torch.sqrt((comp - srgb_to_linear(image)) ** 2 + EPS ** 2).mean(dim=1, keepdim=True)
    return 0.5 * (l_alpha * w).sum() / denom + 0.5 * (l_comp * w).sum() / denom
