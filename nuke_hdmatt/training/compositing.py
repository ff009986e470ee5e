"""Linear-light compositing in the network's sRGB input space.

The network sees sRGB-encoded Rec.709 in 0-1 (what the imaging layer produces through OCIO
at inference), but the compositing equation I = aF + (1-a)B only holds for light, so fg and bg
are decoded to linear, composited, and encoded again. The transfer function is the piecewise
IEC 61966-2-1 curve, which is what OCIO's ``sRGB Encoded Rec.709`` space uses
(``tests/test_transforms.py`` checks the two agree).
"""

from __future__ import annotations

import numpy as np

__all__ = ["srgb_to_linear", "linear_to_srgb", "composite", "merge_over"]


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (float32, same shape)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values in [0, 1] (float32, same shape)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92,
                    1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite straight (unpremultiplied) ``fg`` over ``bg`` in linear light.

    Parameters
    ----------
    fg, bg : ndarray, shape (H, W, 3), float, sRGB-encoded 0-1
    alpha : ndarray, shape (H, W), float in [0, 1]

    Returns
    -------
    ndarray, shape (H, W, 3), float32, sRGB-encoded 0-1 (the network input space)
    """
    a = np.asarray(alpha, dtype=np.float32)[..., None]
    lin = a * srgb_to_linear(fg) + (1.0 - a) * srgb_to_linear(bg)
    return linear_to_srgb(lin)


def merge_over(fg_a: np.ndarray, alpha_a: np.ndarray, fg_b: np.ndarray,
               alpha_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-foreground merge (DIM/GCA augmentation): ``a`` over ``b`` as one foreground.

    Returns the straight colour and alpha of the merged layer such that compositing it over
    any background equals compositing ``b`` and then ``a`` (exact in linear light).

    Parameters
    ----------
    fg_a, fg_b : ndarray, shape (H, W, 3), sRGB-encoded 0-1
    alpha_a, alpha_b : ndarray, shape (H, W), 0-1

    Returns
    -------
    (fg, alpha) : float32 (H, W, 3) sRGB-encoded 0-1 and float32 (H, W)
    """
    aa = np.asarray(alpha_a, dtype=np.float32)
    ab = np.asarray(alpha_b, dtype=np.float32)
    alpha = 1.0 - (1.0 - aa) * (1.0 - ab)
    premult = aa[..., None] * srgb_to_linear(fg_a) + ((1.0 - aa) * ab)[..., None] * srgb_to_linear(fg_b)
    # Where the merged alpha is 0 the colour is irrelevant; keep a's so it stays defined.
    safe = np.maximum(alpha, 1e-6)[..., None]
    lin = np.where(alpha[..., None] > 1e-6, premult / safe, srgb_to_linear(fg_a))
    return linear_to_srgb(lin), alpha.astype(np.float32)
