"""Atomic writes for cached and generated training data: write a temp file in the target's
folder, then rename, so a killed run never leaves a half-written file that a later run
would trust."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["save_npz_atomic", "save_npy_atomic", "write_png_atomic"]


def _temp_beside(path: Path, suffix: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return tmp


def _commit(tmp: str, path: Path) -> None:
    os.replace(tmp, path)


def save_npz_atomic(path, compressed: bool = True, **arrays) -> None:
    """``np.savez[_compressed]`` to ``path`` atomically."""
    path = Path(path)
    tmp = _temp_beside(path, ".npz")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npy_atomic(path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    path = Path(path)
    tmp = _temp_beside(path, ".npy")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png_atomic(path, pixels: np.ndarray) -> None:
    """Write (H, W) or (H, W, C) float 0-1 pixels as an 8-bit PNG atomically (OpenImageIO)."""
    import OpenImageIO as oiio

    path = Path(path)
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0))
    channels = pixels.shape[2]
    tmp = _temp_beside(path, ".png")
    try:
        out = oiio.ImageOutput.create(tmp)
        if out is None:
            raise OSError(f"{path}: {oiio.geterror()}")
        spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], channels, "uint8")
        ok = out.open(tmp, spec) and out.write_image(pixels)
        err = out.geterror()
        out.close()
        if not ok:
            raise OSError(f"{path}: {err}")
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
