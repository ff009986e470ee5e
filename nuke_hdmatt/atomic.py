"""Atomic writes for weights, checkpoints, cached data, job templates and reports: write a
temp file in the target's folder, then rename, so a killed run never leaves a half-written
file that a later run would trust, and a failed run never clobbers the previous file.

Standard library only at import time (the Nuke side may use it); numpy and OpenImageIO
are imported by the functions that need them. (Images the product outputs go through
``imaging.writing``, which also fsyncs and keeps OIIO's specs.)"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "save_npz_atomic", "save_npy_atomic", "write_png_atomic",
           "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on any
    error remove it and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; the final file gets the permissions a plain open() would
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz_atomic(path, compressed: bool = True, **arrays) -> None:
    """``np.savez[_compressed]`` to ``path`` atomically."""
    import numpy as np
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def save_npy_atomic(path, array) -> None:
    """``np.save`` to ``path`` atomically."""
    import numpy as np
    with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def write_text_atomic(path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path, ".txt") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_png_atomic(path, pixels) -> None:
    """Write (H, W) or (H, W, C) float 0-1 pixels as an 8-bit PNG atomically (OpenImageIO)."""
    import numpy as np
    import OpenImageIO as oiio

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    pixels = np.ascontiguousarray(np.clip(pixels, 0.0, 1.0))
    with atomic_path(path, ".png") as tmp:
        out = oiio.ImageOutput.create(tmp)
        if out is None:
            raise OSError(f"{path}: {oiio.geterror()}")
        spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], "uint8")
        ok = out.open(tmp, spec) and out.write_image(pixels)
        err = out.geterror()
        out.close()
        if not ok:
            raise OSError(f"{path}: {err}")
