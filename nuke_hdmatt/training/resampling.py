"""Resampling that keeps thin structures: exact area (box) averaging for downscales.

Bilinear downscaling by 2x or more skips pixels, so sub-pixel hair flickers in and out of
the alpha; area averaging integrates coverage, which is what a camera does.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["area_matrix", "resize_area", "reduce_blocks", "resize"]


@functools.lru_cache(maxsize=64)
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix whose rows average the input cells each output cell
    covers, weighted by overlap length (rows sum to 1). Works for up- and downscaling.
    Cached and read-only: crops reuse a handful of sizes."""
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges_out[1:, None], np.arange(n_in)[None, :] + 1)
    w = np.clip(hi - lo, 0.0, None)
    m = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
    m.flags.writeable = False
    return m


@functools.lru_cache(maxsize=64)
def _sparse_area(n_in: int, n_out: int):
    # each output cell covers only ~n_in/n_out input cells: sparse keeps the cost O(H * W)
    from scipy import sparse
    return sparse.csr_matrix(area_matrix(n_in, n_out))


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample ``image`` (H, W) or (H, W, C) to (height, width[, C]), float32.

    Separable sparse products: cost O((H + height) * W * C), fine for whole plates too.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] == (height, width):
        return image.copy()
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else image.shape[2]
    rows = _sparse_area(h, height)
    cols = _sparse_area(w, width)
    tmp = np.asarray(rows @ image.reshape(h, w * c), dtype=np.float32)          # (height, w*c)
    tmp = tmp.reshape(height, w, c).transpose(1, 0, 2).reshape(w, height * c)
    out = np.asarray(cols @ tmp, dtype=np.float32).reshape(width, height, c).transpose(1, 0, 2)
    out = np.ascontiguousarray(out)
    return out[..., 0] if image.ndim == 2 else out


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
