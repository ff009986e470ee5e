"""Patch grid, reflective patch extraction and the appendix-A blend weights (numpy only).

Patches sit at multiples of ``stride = patch - overlap``; the last row/column may
run past the frame and is filled by reflection (no full-frame padded copy is
made, so memory stays at the input plus one patch). Blend weights ramp linearly
over the overlap band on sides that have a neighbour and are 1 elsewhere; with
half-pixel centred ramps the weights of overlapping patches sum to exactly 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` folded into [0, size) by mirror reflection
    (edge pixel not repeated, like ``np.pad(mode="reflect")``)."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.int64)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx).astype(np.int64)


@dataclass(frozen=True)
class PatchGrid:
    """Square patches of side ``patch`` overlapping by ``overlap`` over an HxW frame."""

    height: int
    width: int
    patch: int = 320
    overlap: int = 32

    def __post_init__(self):
        if self.patch <= 0 or self.patch % 8:
            raise ValueError(f"patch must be a positive multiple of 8, got {self.patch}")
        if not 0 <= self.overlap < self.patch // 2 + 1:
            raise ValueError(f"overlap must be in [0, patch/2], got {self.overlap}")
        if self.height < 1 or self.width < 1:
            raise ValueError("empty frame")

    @property
    def stride(self) -> int:
        return self.patch - self.overlap

    def _count(self, size: int) -> int:
        return max(1, math.ceil((size - self.overlap) / self.stride)) if size > self.patch else 1

    @property
    def rows(self) -> int:
        return self._count(self.height)

    @property
    def cols(self) -> int:
        return self._count(self.width)

    def __len__(self) -> int:
        return self.rows * self.cols

    def origin(self, r: int, c: int) -> tuple[int, int]:
        return r * self.stride, c * self.stride

    def extract(self, array: np.ndarray, r: int, c: int) -> np.ndarray:
        """Patch (patch, patch[, C]) at grid cell (r, c), reflect-padded past the border."""
        y0, x0 = self.origin(r, c)
        ys = reflect_indices(y0, self.patch, self.height)
        xs = reflect_indices(x0, self.patch, self.width)
        if y0 + self.patch <= self.height and x0 + self.patch <= self.width:
            return array[y0:y0 + self.patch, x0:x0 + self.patch]
        return array[ys[:, None], xs[None, :]]

    def weights(self, r: int, c: int) -> np.ndarray:
        """Blend weights (patch, patch) float32 for cell (r, c)."""
        wy = self._ramp(r > 0, r < self.rows - 1)
        wx = self._ramp(c > 0, c < self.cols - 1)
        return np.outer(wy, wx).astype(np.float32)

    def _ramp(self, before: bool, after: bool) -> np.ndarray:
        w = np.ones(self.patch, dtype=np.float64)
        o = self.overlap
        if o > 0:
            ramp = (np.arange(o) + 0.5) / o
            if before:
                w[:o] = ramp
            if after:
                w[-o:] = ramp[::-1]
        return w

    def accumulate(self, out: np.ndarray, values: np.ndarray, r: int, c: int) -> None:
        """Add ``weights * values`` of cell (r, c) into ``out`` (the in-frame part only)."""
        y0, x0 = self.origin(r, c)
        h = min(self.patch, self.height - y0)
        w = min(self.patch, self.width - x0)
        out[y0:y0 + h, x0:x0 + w] += (self.weights(r, c) * values)[:h, :w]

    def cell_bounds(self, r: int, c: int) -> tuple[int, int, int, int]:
        """In-frame extent (y0, y1, x0, x1) of cell (r, c)."""
        y0, x0 = self.origin(r, c)
        return y0, min(y0 + self.patch, self.height), x0, min(x0 + self.patch, self.width)


def stitch(grid: PatchGrid, patch_fn, dtype=np.float32) -> np.ndarray:
    """Blend ``patch_fn(r, c) -> (patch, patch)`` over the whole grid into an HxW frame."""
    out = np.zeros((grid.height, grid.width), dtype=dtype)
    for r in range(grid.rows):
        for c in range(grid.cols):
            grid.accumulate(out, patch_fn(r, c), r, c)
    return out
