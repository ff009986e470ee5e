"""The dev set as alphamatting.com lays it out, read one way for every user: ``hdmatt eval``,
validation during training, the benchmarks and the tests.

``DATASET/image/NAME.png`` (8-bit sRGB, the network's input space as it is), ``trimap1/``,
``trimap2/`` (0 / 128 / 255, snapped like any trimap file) and ``alpha/`` (ground truth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import MissingFileError, TrimapError
from .imaging.trimaps import snap_trimap

__all__ = ["read_image", "load_case", "check_case", "case_files", "list_images"]


def read_image(path) -> np.ndarray:
    """Read an image with OpenImageIO as float32 (H, W, C) in 0-1 (8-bit files are scaled),
    as plates are read (the file's own values, one line for a damaged file).

    Raises
    ------
    MissingFileError, PlateError
    """
    from .imaging.plates import open_image, read_subimage

    path = str(path)
    inp = open_image(path)
    try:
        return read_subimage(inp, 0, path)
    finally:
        inp.close()


def case_files(dataset_dir, name: str, trimap_set: str) -> dict[str, Path]:
    """The files of one case: ``image``, ``trimap`` (of that set) and ``alpha``."""
    root = Path(dataset_dir)
    return {"image": root / "image" / f"{name}.png", "trimap": root / trimap_set / f"{name}.png",
            "alpha": root / "alpha" / f"{name}.png"}


def check_case(dataset_dir, name: str, trimap_set: str) -> None:
    """What :func:`load_case` would refuse in the files' sizes, from their headers alone
    (a whole dataset is checked before the first method runs).

    Raises
    ------
    MissingFileError, PlateError, TrimapError
    """
    from .imaging.plates import open_image

    files = case_files(dataset_dir, name, trimap_set)
    sizes = {}
    for role, path in files.items():
        inp = open_image(str(path))
        sizes[role] = (inp.spec().width, inp.spec().height)
        inp.close()
    _check_sizes(files, sizes)


def _check_sizes(files: dict[str, Path], sizes: dict[str, tuple[int, int]]) -> None:
    w, h = sizes["image"]
    for role in ("trimap", "alpha"):
        if sizes[role] != (w, h):
            raise TrimapError(f"size {sizes[role][0]}x{sizes[role][1]} differs from the "
                              f"image's {w}x{h}", path=str(files[role]))


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
    files = case_files(dataset_dir, name, trimap_set)
    image = read_image(files["image"])
    image = np.repeat(image, 3, axis=2) if image.shape[2] < 3 else image[..., :3]
    raw = read_image(files["trimap"])[..., 0]
    gt = read_image(files["alpha"])[..., 0]
    _check_sizes(files, {role: (a.shape[1], a.shape[0]) for role, a in
                         (("image", image), ("trimap", raw), ("alpha", gt))})
    trimap = snap_trimap(raw, str(files["trimap"]))
    if not (trimap == 0.5).any():
        raise TrimapError("no unknown pixels to evaluate", path=str(files["trimap"]))
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
