"""Real training sources: the alphamatting-dev foregrounds and the 6K background photos.

Derived data is computed once and cached (atomically) under :func:`data_cache_dir`:

- foreground colours of each dev image, estimated in linear light with the engine's own
  multilevel estimator (``engine.foreground``, on ``device``) from the image and its
  ground-truth alpha, and
  the same colours upsampled to the ``alpha_highres`` size;
- each background downscaled (OpenImageIO) to a few long sides, so a crop costs
  milliseconds instead of a 6K JPEG decode.

Images in :data:`~nuke_hdmatt.training.VALIDATION_IMAGES` are never served unless asked
for by name.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import save_npy_atomic
from ..devset import read_image
from ..errors import MissingFileError, PlateError
from . import VALIDATION_IMAGES, data_cache_dir, shared_data_dir
from .compositing import linear_to_srgb, srgb_to_linear
from .resampling import resize

__all__ = ["ForegroundSource", "DevForegrounds", "BackgroundBank", "read_image",
           "training_names"]

# Bump when the cached derivation changes, so stale caches are not reused.
# v2: foreground colours from engine.foreground (v1: PyMatting estimate_foreground_ml).
_CACHE_VERSION = "v2"
# Cap on remembered unknown-pixel coordinates per source (for centring crops).
_MAX_UNKNOWN_COORDS = 50_000


@dataclass
class ForegroundSource:
    """One foreground layer to composite.

    Attributes
    ----------
    fg : ndarray (H, W, 3), uint8 or float32, sRGB-encoded (0-255 or 0-1), straight colour
    alpha : ndarray (H, W), uint8 or float32 (0-255 or 0-1)
    name : str
    unknown_yx : ndarray (N, 2) int, coordinates of some pixels with 0 < alpha < 1
    max_scale : float, largest magnification allowed when placing it (1 = native pixels)
    in_place : bool, the layer was drawn for the canvas: placement keeps the anchor pixel
        where it is (rotating/scaling about it) instead of moving it, so the layer's own
        frame stays mostly out of view
    native : bool, its pixels are a plate's (a high-resolution ground truth): placement may
        keep them at their own scale
    """

    fg: np.ndarray
    alpha: np.ndarray
    name: str
    unknown_yx: np.ndarray
    max_scale: float = 1.0
    in_place: bool = False
    native: bool = False

    def region(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 fg (sRGB 0-1) and alpha (0-1) of the window.

        Beyond a side of the frame that the subject touches, the layer is mirrored: a
        subject cut by its photo's frame (or a procedural layer cut by its canvas) would
        otherwise show a straight alpha edge that no real matte has, wherever placement
        moves that frame into view. Beyond the other sides it is empty (alpha 0).
        """
        h, w = self.alpha.shape
        if y0 >= 0 and x0 >= 0 and y1 <= h and x1 <= w:
            f, a = self.fg[y0:y1, x0:x1], self.alpha[y0:y1, x0:x1]
        else:
            yr, xr = np.arange(y0, y1), np.arange(x0, x1)
            ys, xs = _mirror(yr, h), _mirror(xr, w)
            lo, hi = int(ys.min()), int(ys.max())
            # Read only the needed rows (sources are memory-mapped), then index.
            f = np.asarray(self.fg[lo:hi + 1])[ys - lo][:, xs]
            a = np.asarray(self.alpha[lo:hi + 1])[ys - lo][:, xs]
            top, bottom, left, right = self.touches_frame
            empty = ((~top & (yr < 0)) | (~bottom & (yr >= h)))[:, None] \
                | ((~left & (xr < 0)) | (~right & (xr >= w)))[None, :]
            a = np.where(empty, 0, a)
        f = np.asarray(f, dtype=np.float32)
        a = np.asarray(a, dtype=np.float32)
        if self.fg.dtype == np.uint8:
            f = f / 255.0
        if self.alpha.dtype == np.uint8:
            a = a / 255.0
        return f, a

    @property
    def touches_frame(self) -> tuple:
        """(top, bottom, left, right): whether the subject reaches that side of the frame."""
        if getattr(self, "_touches", None) is None:
            a = self.alpha
            limit = 5 if a.dtype == np.uint8 else 0.02
            self._touches = tuple(np.bool_(np.asarray(edge).max() > limit)
                                  for edge in (a[0], a[-1], a[:, 0], a[:, -1]))
        return self._touches


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Reflect indices into [0, n) (edge pixel not repeated), any distance outside."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    i = np.mod(index, period)
    return np.where(i < n, i, period - i)


def training_names(dev_dir, holdout=VALIDATION_IMAGES) -> list[str]:
    """Dev image names (``GT01`` ...) that have image and alpha, minus ``holdout``."""
    names = sorted(Path(p).stem for p in glob.glob(os.path.join(dev_dir, "alpha", "*.png")))
    held = {h.strip().upper() for h in holdout}
    return [n for n in names if n.upper() not in held
            and os.path.exists(os.path.join(dev_dir, "image", f"{n}.png"))]


def _unknown_coords(alpha_u8: np.ndarray) -> np.ndarray:
    yx = np.argwhere((alpha_u8 > 0) & (alpha_u8 < 255)).astype(np.int32)
    if len(yx) > _MAX_UNKNOWN_COORDS:
        keep = np.linspace(0, len(yx) - 1, _MAX_UNKNOWN_COORDS).astype(np.int64)
        yx = yx[keep]
    return yx


class DevForegrounds:
    """The alphamatting-dev images as foreground sources (validation images excluded).

    Parameters
    ----------
    dev_dir : path, optional
        Folder laid out like alphamatting-dev (image/, alpha/, alpha_highres/).
    cache_dir : path, optional
        Default :func:`~nuke_hdmatt.training.data_cache_dir`.
    holdout : sequence of str
        Names never served (default the validation split).
    highres_probability : float
        Chance that :meth:`draw` serves the high-resolution alpha (with upsampled colours)
        when the image has one.
    device : str
        Where foreground colours are estimated (a torch device; the result is cached).
    """

    def __init__(self, dev_dir=None, cache_dir=None, holdout=VALIDATION_IMAGES,
                 highres_probability: float = 0.5, device: str = "cpu"):
        self.device = device
        self.dev_dir = Path(dev_dir) if dev_dir else shared_data_dir() / "alphamatting-dev"
        self.cache_dir = Path(cache_dir) if cache_dir else data_cache_dir()
        self.names = training_names(self.dev_dir, holdout)
        if not self.names:
            raise MissingFileError("no training foregrounds (image/ + alpha/ PNGs)",
                                   path=str(self.dev_dir))
        self.highres_probability = highres_probability
        self._loaded: dict[tuple[str, bool], ForegroundSource] = {}

    def _cache(self, name: str, what: str) -> Path:
        return self.cache_dir / f"{name}_{what}_{_CACHE_VERSION}.npy"

    def prepare(self, progress=None) -> None:
        """Estimate and cache every foreground now (otherwise done lazily on first use)."""
        for i, name in enumerate(self.names):
            self.source(name, highres=self.has_highres(name))
            if progress:
                progress(i + 1, len(self.names), name)

    def has_highres(self, name: str) -> bool:
        return (self.dev_dir / "alpha_highres" / f"{name}.png").exists()

    def _lowres_fg(self, name: str) -> np.ndarray:
        path = self._cache(name, "fg")
        if path.exists():
            return np.load(path, mmap_mode="r")
        from ..engine.foreground import estimate_foreground

        image = read_image(self.dev_dir / "image" / f"{name}.png")[..., :3]
        alpha = read_image(self.dev_dir / "alpha" / f"{name}.png")[..., 0]
        # The compositing equation holds for light, so solve for F in linear and encode.
        fg_lin = estimate_foreground(srgb_to_linear(image).astype(np.float32),
                                     alpha.astype(np.float32), device=self.device)
        fg = np.round(linear_to_srgb(fg_lin) * 255.0).astype(np.uint8)
        save_npy_atomic(path, fg)
        return fg

    def _alpha_u8(self, name: str, highres: bool) -> np.ndarray:
        folder = "alpha_highres" if highres else "alpha"
        path = self._cache(name, "alpha_highres" if highres else "alpha")
        if path.exists():
            return np.load(path, mmap_mode="r")
        alpha = read_image(self.dev_dir / folder / f"{name}.png")[..., 0]
        alpha = np.round(alpha * 255.0).astype(np.uint8)
        save_npy_atomic(path, alpha)
        return alpha

    def source(self, name: str, highres: bool = False) -> ForegroundSource:
        """The cached foreground ``name`` at low or high resolution."""
        key = (name, highres)
        if key in self._loaded:
            return self._loaded[key]
        fg = self._lowres_fg(name)
        alpha = self._alpha_u8(name, highres)
        if highres:
            path = self._cache(name, "fg_highres")
            if path.exists():
                fg = np.load(path, mmap_mode="r")
            else:
                fg = np.round(resize(np.asarray(fg, np.float32), *alpha.shape) ).clip(0, 255)
                fg = fg.astype(np.uint8)
                save_npy_atomic(path, fg)
        src = ForegroundSource(fg=fg, alpha=alpha, name=f"{name}{'@hr' if highres else ''}",
                               unknown_yx=_unknown_coords(np.asarray(alpha)), native=highres)
        self._loaded[key] = src
        return src

    def draw(self, rng: np.random.Generator) -> ForegroundSource:
        name = self.names[int(rng.integers(len(self.names)))]
        highres = self.has_highres(name) and rng.random() < self.highres_probability
        return self.source(name, highres)


class BackgroundBank:
    """Random crops of the background photos, from cached downscaled copies.

    Parameters
    ----------
    bg_dir : path, optional
        Folder of background images (default shared/data/backgrounds).
    cache_dir : path, optional
    long_sides : tuple of int
        Long sides of the cached copies; a crop picks one at random (scale variety).
    """

    def __init__(self, bg_dir=None, cache_dir=None, long_sides=(1024, 2048)):
        self.bg_dir = Path(bg_dir) if bg_dir else shared_data_dir() / "backgrounds"
        self.cache_dir = Path(cache_dir) if cache_dir else data_cache_dir()
        self.paths = sorted(p for p in self.bg_dir.glob("*")
                            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".exr", ".tif"))
        if not self.paths:
            raise MissingFileError("no background images", path=str(self.bg_dir))
        self.long_sides = tuple(long_sides)
        self._loaded: dict[tuple[int, int], np.ndarray] = {}

    def image(self, index: int, long_side: int) -> np.ndarray:
        """uint8 (H, W, 3) sRGB copy of background ``index`` with the given long side."""
        key = (index, long_side)
        if key in self._loaded:
            return self._loaded[key]
        src = self.paths[index]
        path = self.cache_dir / f"bg_{src.stem}_{long_side}_{_CACHE_VERSION}.npy"
        if path.exists():
            arr = np.load(path, mmap_mode="r")
        else:
            arr = self._downscale(src, long_side)
            save_npy_atomic(path, arr)
        self._loaded[key] = arr
        return arr

    @staticmethod
    def _downscale(src: Path, long_side: int) -> np.ndarray:
        import OpenImageIO as oiio

        buf = oiio.ImageBuf(str(src))
        spec = buf.spec()
        if buf.has_error or spec.width == 0:
            raise PlateError(f"cannot read: {buf.geterror()}", path=str(src))
        s = min(1.0, long_side / max(spec.width, spec.height))
        w, h = max(1, round(spec.width * s)), max(1, round(spec.height * s))
        small = oiio.ImageBufAlgo.resize(buf, roi=oiio.ROI(0, w, 0, h, 0, 1, 0, 3))
        pixels = small.get_pixels(oiio.FLOAT)
        assert pixels is not None  # the resize of an image that did read
        pixels = pixels[..., :3]
        return np.round(np.clip(pixels, 0, 1) * 255.0).astype(np.uint8)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random (size, size, 3) float32 sRGB 0-1 crop, random scale and flip."""
        img = self.image(int(rng.integers(len(self.paths))),
                         self.long_sides[int(rng.integers(len(self.long_sides)))])
        h, w = img.shape[:2]
        side = int(min(h, w, max(8, size * rng.uniform(0.6, 1.6))))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = np.asarray(img[y0:y0 + side, x0:x0 + side], np.float32) / 255.0
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return resize(crop, size, size)
