"""Resampling that keeps thin structures: exact area (box) averaging for downscales.

Bilinear downscaling by 2x or more skips pixels, so sub-pixel hair flickers in and out of
the alpha; area averaging integrates coverage, which is what a camera does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["area_matrix", "resize_area", "reduce_blocks", "resize"]


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix whose rows average the input cells each output cell
    covers, weighted by overlap length (rows sum to 1). Works for up- and downscaling."""
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges_out[1:, None], np.arange(n_in)[None, :] + 1)
    w = np.clip(hi - lo, 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample ``image`` (H, W) or (H, W, C) to (height, width[, C]), float32.

    Cost is O(height * H * W); meant for patches and crops up to ~1-2K, not whole 6K plates
    (use :func:`reduce_blocks` first).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] == (height, width):
        return image.copy()
    rows = area_matrix(image.shape[0], height)
    cols = area_matrix(image.shape[1], width)
    if image.ndim == 2:
        return rows @ image @ cols.T
    h, w, c = image.shape
    tmp = (rows @ image.reshape(h, w * c)).reshape(height, w, c)
    return np.ascontiguousarray((tmp.transpose(0, 2, 1) @ cols.T).transpose(0, 2, 1))


def reduce_blocks(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (trailing rows/columns that do not fill a
    block are dropped). (H, W[, C]) -> (H // f, W // f[, C]) float32."""
    image = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return image
    h = image.shape[0] // factor * factor
    w = image.shape[1] // factor * factor
    shape = (h // factor, factor, w // factor, factor) + image.shape[2:]
    return image[:h, :w].reshape(shape).mean(axis=(1, 3))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area average when shrinking, bilinear when enlarging (box upscaling is blocky).
    (H, W[, C]) -> (height, width[, C]) float32."""
    image = np.asarray(image, dtype=np.float32)
    if height <= image.shape[0] and width <= image.shape[1]:
        return resize_area(image, height, width)
    from scipy import ndimage

    zoom = (height / image.shape[0], width / image.shape[1]) + (1,) * (image.ndim - 2)
    out = ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True)
    return out[:height, :width]
