"""Snapping the unknown band's near-certain alpha to exactly 0 and 1.

The network predicts a residual on its prior's logit, and the cascade's detail model mixes
alphas, so neither ever reaches 0 or 1: about 30 % of a band's pixels end within 0.01 of
each, where the ground truth is exactly 0 or 1. A comp shows that as a faint veil of
background over solid foreground and of plate over the background (a grade or a merge
lifts it), and it costs SAD. The threshold was chosen on the training images
(``benchmarks/alpha_snap.py``; docs/ENGINE.md, "Snapping to 0 and 1").
"""

from __future__ import annotations

import numpy as np

__all__ = ["snap_alpha"]


def snap_alpha(alpha: np.ndarray, unknown: np.ndarray, threshold: float) -> np.ndarray:
    """``alpha`` (H, W) with its ``unknown`` pixels below ``threshold`` set to 0 and above
    ``1 - threshold`` set to 1, in place (and returned); threshold 0 changes nothing."""
    if threshold > 0:
        band = alpha[unknown]
        band[band < threshold] = 0.0
        band[band > 1.0 - threshold] = 1.0
        alpha[unknown] = band
    return alpha
