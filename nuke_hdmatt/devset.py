"""The dev set as alphamatting.com lays it out, read one way for every user: ``hdmatt eval``,
validation during training, the benchmarks and the tests.

``DATASET/image/NAME.png`` (8-bit sRGB, the network's input space as it is), ``trimap1/``,
``trimap2/`` (0 / 128 / 255, snapped like any trimap file) and ``alpha/`` (ground truth).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import MissingFileError, PlateError, TrimapError
from .imaging.trimaps import snap_trimap

__all__ = ["read_image", "load_case", "list_images"]


def read_image(path) -> np.ndarray:
    """Read an image with OpenImageIO as float32 (H, W, C) in 0-1 (8-bit files are scaled).

    Raises
    ------
    MissingFileError, PlateError
    """
    import OpenImageIO as oiio

    path = str(path)
    if not os.path.exists(path):
        raise MissingFileError("file not found", path=path)
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise PlateError(f"cannot read: {oiio.geterror()}", path=path)
    try:
        pixels = inp.read_image(0, 0, 0, inp.spec().nchannels, "float")
    finally:
        inp.close()
    if pixels is None:
        raise PlateError("cannot decode pixels", path=path)
    return np.asarray(pixels, dtype=np.float32).reshape(inp.spec().height, inp.spec().width, -1)


def load_case(dataset_dir, name: str, trimap_set: str):
    """Read one case: the image, a trimap set's trimap and the ground truth.

    Returns
    -------
    image : float32 (H, W, 3), sRGB-encoded 0-1 (the network input space)
    trimap : float32 (H, W) in {0, 0.5, 1}
    gt : float32 (H, W) alpha in [0, 1]

    Raises
    ------
    MissingFileError, TrimapError (size mismatch, or no unknown pixel)
    """
    root = Path(dataset_dir)
    image = read_image(root / "image" / f"{name}.png")
    image = np.repeat(image, 3, axis=2) if image.shape[2] < 3 else image[..., :3]
    tri_path = root / trimap_set / f"{name}.png"
    raw = read_image(tri_path)[..., 0]
    gt = read_image(root / "alpha" / f"{name}.png")[..., 0]
    if raw.shape != image.shape[:2] or gt.shape != image.shape[:2]:
        raise TrimapError(f"size {raw.shape[1]}x{raw.shape[0]} (alpha {gt.shape[1]}x{gt.shape[0]})"
                          f" differs from the image's {image.shape[1]}x{image.shape[0]}",
                          path=str(tri_path))
    trimap = snap_trimap(raw, str(tri_path))
    if not (trimap == 0.5).any():
        raise TrimapError("no unknown pixels to evaluate", path=str(tri_path))
    return np.ascontiguousarray(image), trimap, gt


def list_images(dataset_dir, trimap_sets) -> list[str]:
    """Names with an image, a ground-truth alpha and every requested trimap."""
    root = Path(dataset_dir)
    if not (root / "image").is_dir():
        raise MissingFileError("not an evaluation dataset (no image/ folder)", path=str(root))
    names = []
    for p in sorted((root / "image").glob("*.png")):
        if (root / "alpha" / p.name).exists() and all((root / t / p.name).exists()
                                                       for t in trimap_sets):
            names.append(p.stem)
    return names
