"""Matting error metrics: SAD, MSE, Grad and Conn as the DIM / alphamatting reference code
computes them (Xu et al. 2017, ``compute_*_loss.m``; Rhemann et al. 2009).

All four take whole-image alphas and measure only over the unknown region of the trimap, so
numbers are comparable with published tables. numpy/scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["unknown_mask", "sad", "mse", "grad", "conn", "all_metrics", "METRIC_NAMES"]

METRIC_NAMES = ("sad", "mse", "grad", "conn")

# Half a code value of an 8-bit trimap: a float trimap read from an 8-bit PNG holds 0.50196
# for "unknown", which must still count as unknown.
_TRIMAP_TOLERANCE = 0.5 / 255.0


def unknown_mask(trimap: np.ndarray) -> np.ndarray:
    """Boolean mask of the trimap's unknown region.

    Parameters
    ----------
    trimap : ndarray, shape (H, W)
        Either uint8 {0, 128, 255} (as the reference PNGs store it) or float in [0, 1] with
        0 = background, 1 = foreground and anything strictly between = unknown.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    trimap = np.asarray(trimap)
    if trimap.ndim != 2:
        raise ValueError(f"trimap must be 2-D (H, W), got shape {trimap.shape}")
    if np.issubdtype(trimap.dtype, np.integer):
        return (trimap > 0) & (trimap < 255)
    return (trimap > _TRIMAP_TOLERANCE) & (trimap < 1.0 - _TRIMAP_TOLERANCE)


def _checked(pred, gt, trimap):
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be equal 2-D shapes")
    mask = unknown_mask(trimap)
    if mask.shape != pred.shape:
        raise ValueError(f"trimap {mask.shape} does not match alpha {pred.shape}")
    return pred, gt, mask


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of absolute differences over the unknown region, divided by 1000.

    Parameters
    ----------
    pred, gt : ndarray, shape (H, W), alpha in [0, 1]
    trimap : ndarray, shape (H, W), see :func:`unknown_mask`

    Returns
    -------
    float
    """
    pred, gt, mask = _checked(pred, gt, trimap)
    return float(np.abs(pred - gt)[mask].sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> float:
    """Mean squared error over the unknown region (tables report it x1e-3).

    Returns 0.0 when the trimap has no unknown pixel.
    """
    pred, gt, mask = _checked(pred, gt, trimap)
    n = int(mask.sum())
    if n == 0:
        return 0.0
    return float(((pred - gt) ** 2)[mask].sum() / n)


def _gaussian_gradient_kernel(sigma: float) -> np.ndarray:
    """The reference ``gaussgradient.m`` x-kernel: Gaussian along y times its derivative
    along x, unit L2 norm, half size from a 1e-2 truncation of the Gaussian."""
    epsilon = 1e-2
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2.0 * np.pi) * sigma * epsilon))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-u ** 2 / (2.0 * sigma ** 2)) / (sigma * np.sqrt(2.0 * np.pi))
    dgauss = -u * gauss / sigma ** 2
    hx = gauss[:, None] * dgauss[None, :]
    return hx / np.sqrt(np.sum(hx * hx))


def _gradient_magnitude(image: np.ndarray, sigma: float) -> np.ndarray:
    hx = _gaussian_gradient_kernel(sigma)
    # MATLAB imfilter(..., 'replicate', 'conv') == scipy convolve with mode 'nearest'.
    gx = ndimage.convolve(image, hx, mode="nearest")
    gy = ndimage.convolve(image, hx.T, mode="nearest")
    return np.sqrt(gx * gx + gy * gy)


def _min_max(image: np.ndarray) -> np.ndarray:
    # mat2gray: a constant map has no gradient whatever it is scaled to, so zeros are exact.
    lo, hi = image.min(), image.max()
    if hi <= lo:
        return np.zeros_like(image)
    return (image - lo) / (hi - lo)


def grad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, sigma: float = 1.4) -> float:
    """Gradient error: sum over U of (|grad p| - |grad g|)^2 / 1000.

    Gradients use first-derivative-of-Gaussian filters (``sigma`` = 1.4) after min-max
    normalising each whole map, as the reference code does.
    """
    pred, gt, mask = _checked(pred, gt, trimap)
    pa = _gradient_magnitude(_min_max(pred), sigma)
    ga = _gradient_magnitude(_min_max(gt), sigma)
    return float(((pa - ga) ** 2)[mask].sum() / 1000.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    # Default structuring element of ndimage.label is the 4-connected cross.
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def conn(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, step: float = 0.1,
         theta: float = 0.15) -> float:
    """Connectivity error (Rhemann et al. 2009) over U, divided by 1000.

    For thresholds ``step, 2 step, ..., 1`` the largest 4-connected component where both maps
    are >= the threshold is found; a pixel's level ``l`` is the last threshold at which it was
    still in that component. ``phi = 1 - (alpha - l)`` where ``alpha - l >= theta``, else 1.
    """
    pred, gt, mask = _checked(pred, gt, trimap)
    thresholds = np.arange(0.0, 1.0 + step / 2, step)
    level = np.full(pred.shape, -1.0)
    for previous, t in zip(thresholds[:-1], thresholds[1:]):
        omega = _largest_component((pred >= t) & (gt >= t))
        level[(level == -1.0) & ~omega] = previous
    level[level == -1.0] = 1.0
    pd = pred - level
    gd = gt - level
    p_phi = 1.0 - pd * (pd >= theta)
    g_phi = 1.0 - gd * (gd >= theta)
    return float(np.abs(p_phi - g_phi)[mask].sum() / 1000.0)


def all_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict:
    """All four metrics as ``{"sad", "mse", "grad", "conn"}`` floats (MSE not scaled)."""
    return {"sad": sad(pred, gt, trimap), "mse": mse(pred, gt, trimap),
            "grad": grad(pred, gt, trimap), "conn": conn(pred, gt, trimap)}
