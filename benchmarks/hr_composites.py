"""High-resolution test frames built from real ground truth, and hair-crop figures.

A composite is ``alpha_highres`` (the alphamatting.com high-resolution ground truth,
2080-3694 px wide) over a native-pixel crop of a 6K background photo, composited in linear
light (``nuke_hdmatt.training.compositing.composite``). The high-resolution foreground
colours do not exist: the colour is PyMatting's ``estimate_foreground_ml`` solved in linear
light on the 800 px dev image with its ground-truth alpha, upsampled bilinearly to the
high-resolution size (``DevForegrounds.source(name, highres=True)``, cached). So fine hair
detail lives in the alpha only; the colour is smooth at that scale.

The trimap comes from the ground truth: known where alpha is exactly 0 or 1 (within half an
8-bit code), and that unknown band widened by :data:`BAND` px on each side (Euclidean disk,
``nuke_hdmatt.imaging.trimap_from_matte``), scaled with the frame.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nuke_hdmatt.training import VALIDATION_IMAGES, shared_data_dir

#: Unknown band half-width in pixels at the full alpha_highres resolution.
BAND = 16


def dev_dir() -> Path:
    return shared_data_dir() / "alphamatting-dev"


def backgrounds_6k() -> list[Path]:
    """Background photos with a long side of at least 5000 px."""
    import OpenImageIO as oiio
    out = []
    for p in sorted((shared_data_dir() / "backgrounds").glob("*.jpg")):
        inp = oiio.ImageInput.open(str(p))
        if inp is not None:
            if max(inp.spec().width, inp.spec().height) >= 5000:
                out.append(p)
            inp.close()
    return out


def data_available() -> bool:
    return (dev_dir() / "alpha_highres").is_dir() and bool(backgrounds_6k())


@dataclass
class HRFrame:
    name: str
    image: np.ndarray       # float32 (H, W, 3) sRGB-encoded 0-1
    trimap: np.ndarray      # float32 (H, W) {0, 0.5, 1}
    alpha: np.ndarray       # float32 (H, W) ground truth 0-1
    background: str
    band: int

    @property
    def unknown_fraction(self) -> float:
        return float((self.trimap == 0.5).mean())

    @property
    def size(self) -> str:
        return f"{self.alpha.shape[1]}x{self.alpha.shape[0]}"


def _read_rgb(path: Path) -> np.ndarray:
    from nuke_hdmatt.training.sources import read_image
    return read_image(path)[..., :3]


def _foreground(name: str) -> np.ndarray:
    from nuke_hdmatt.training.sources import DevForegrounds
    src = DevForegrounds(dev_dir(), holdout=()).source(name, highres=True)
    return np.asarray(src.fg, np.float32) / 255.0


def _trimap(alpha: np.ndarray, band: int) -> np.ndarray:
    from nuke_hdmatt.imaging import trimap_from_matte
    half_code = 0.5 / 255.0
    return trimap_from_matte(alpha, band=band, lo=half_code, hi=1.0 - half_code)


def hr_composite(name: str, index: int = 0, scale: int = 1) -> HRFrame:
    """``name`` (e.g. "GT02") composited over background ``index`` (cycled) at native pixels,
    block-averaged by ``scale`` (1 = full alpha_highres resolution)."""
    from nuke_hdmatt.training.compositing import composite
    from nuke_hdmatt.training.resampling import reduce_blocks
    from nuke_hdmatt.training.sources import read_image
    alpha = read_image(dev_dir() / "alpha_highres" / f"{name}.png")[..., 0]
    fg = _foreground(name)
    h, w = alpha.shape
    bgs = backgrounds_6k()
    bg_path = bgs[index % len(bgs)]
    bg = _read_rgb(bg_path)
    y0, x0 = (bg.shape[0] - h) // 2, (bg.shape[1] - w) // 2
    bg = bg[y0:y0 + h, x0:x0 + w]
    if scale > 1:
        alpha, fg, bg = (reduce_blocks(a, scale) for a in (alpha, fg, bg))
    image = composite(fg, bg, alpha)
    band = max(1, round(BAND / scale))
    return HRFrame(name, image, _trimap(alpha, band), alpha.astype(np.float32), bg_path.name, band)


def frame_6k(name: str, index: int = 0) -> HRFrame:
    """A 6K frame: the ground truth upsampled (bilinear) to fit the whole 6K background,
    centred on it. Upsampled alpha is smooth, so use it for timing, not for quality."""
    from nuke_hdmatt.training.compositing import composite
    from nuke_hdmatt.training.resampling import resize
    from nuke_hdmatt.training.sources import read_image
    alpha = read_image(dev_dir() / "alpha_highres" / f"{name}.png")[..., 0]
    fg = _foreground(name)
    bg_path = backgrounds_6k()[index % len(backgrounds_6k())]
    bg = _read_rgb(bg_path)
    big_h, big_w = bg.shape[:2]
    s = min(big_w / alpha.shape[1], big_h / alpha.shape[0])
    h, w = int(alpha.shape[0] * s), int(alpha.shape[1] * s)
    full_a = np.zeros((big_h, big_w), np.float32)
    full_f = np.zeros((big_h, big_w, 3), np.float32)
    y0, x0 = (big_h - h) // 2, (big_w - w) // 2
    full_a[y0:y0 + h, x0:x0 + w] = np.clip(resize(alpha, h, w), 0, 1)
    full_f[y0:y0 + h, x0:x0 + w] = np.clip(resize(fg, h, w), 0, 1)
    image = composite(full_f, bg, full_a)
    band = round(BAND * s)
    return HRFrame(name, image, _trimap(full_a, band), full_a, bg_path.name, band)


def validation_names() -> list[str]:
    return [n for n in VALIDATION_IMAGES if (dev_dir() / "alpha_highres" / f"{n}.png").exists()]


# ---------------------------------------------------------------------------------------
def hair_box(alpha: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the size x size window with the most alpha edge per area (sum of
    pixel-to-pixel alpha differences): many thin strands score higher than one soft edge or
    a blurred blob, so the window lands where the hair is."""
    from scipy import ndimage
    h, w = alpha.shape
    size = min(size, h, w)
    step = max(1, size // 8)
    edges = np.zeros_like(alpha)
    edges[:, 1:] += np.abs(np.diff(alpha, axis=1))
    edges[1:, :] += np.abs(np.diff(alpha, axis=0))
    coarse = edges[: h // step * step, : w // step * step]
    coarse = coarse.reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    k = max(1, size // step)
    density = ndimage.uniform_filter(coarse, size=k, mode="constant")
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0 = int(np.clip(cy * step + step // 2 - size // 2, 0, h - size))
    x0 = int(np.clip(cx * step + step // 2 - size // 2, 0, w - size))
    return y0, y0 + size, x0, x0 + size


def save_crops(path: Path, rows: list[dict], title: str) -> None:
    """One row per frame: plate crop, ground truth, then each method's alpha on the same box.

    rows: [{"name", "box", "image", "gt", "alphas": {label: HxW}, "sad": {label: float}}]
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure
    labels = list(rows[0]["alphas"])
    ncol = 2 + len(labels)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.3 * ncol, 2.5 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        y0, y1, x0, x1 = row["box"]
        panels = [("plate", row["image"][y0:y1, x0:x1]), ("ground truth", row["gt"][y0:y1, x0:x1])]
        panels += [(f"{lab}\nSAD {row['sad'][lab]:.1f}" if lab in row.get("sad", {}) else lab,
                    a[y0:y1, x0:x1] if a is not None else None) for lab, a in row["alphas"].items()]
        for j, (lab, crop) in enumerate(panels):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if crop is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center")
            elif crop.ndim == 3:
                ax.imshow(np.clip(crop, 0, 1), interpolation="nearest")
            else:
                ax.imshow(crop, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(lab, fontsize=7)
        axes[i, 0].set_ylabel(f"{row['name']}\n{x1 - x0}px crop", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)


def engine_from_args(ap, argv, **settings):
    """(``ap``'s arguments with ``--threads``, the shipped engine with ``settings`` on that
    many CPU threads); the engine is None, said on stderr, where the shared data is missing."""
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not data_available():
        print(f"{ap.prog}: ../shared/data (dev images, alpha_highres, 6K backgrounds) not found",
              file=sys.stderr)
        return args, None
    import torch

    from nuke_hdmatt.engine import Engine
    torch.set_num_threads(args.threads)
    return args, Engine.load(device="cpu", **settings)
