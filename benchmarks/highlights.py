"""Highlights above display white in the unknown band: clipped (``--highlights clip``, the
engine's input before 2026-12-07) against the frame darkened for the network until the
band's highlights fit (``--highlights fit``, the default; ``imaging.colour.highlight_gain``).

The 800 px dev images (ground-truth alpha, PyMatting's foreground colours) over a 6K
background photo reduced to their size, composited in linear Rec.709 with the background
1, 4 and 16 times as bright (a sky 0, 2 and 4 stops over display white), under trimap1 and
trimap2; the engine with its defaults, float32. The rule (the 99.5th percentile of the band's
largest channel brought to white) was fixed before this ran and chose nothing here.

    .venv/bin/python -m benchmarks.highlights [--threads 2]

Writes ``results/highlights.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import hr_composites as hrc
from .report import fmt, machine_info, machine_line, markdown_table, publish

GAINS = (1.0, 4.0, 16.0)
MODES = ("clip", "fit")
SPACE = "lin_rec709_scene"


def plates(name: str, index: int):
    """(alpha, linear foreground, linear background) of a dev image at 800 px."""
    from nuke_hdmatt.training.compositing import srgb_to_linear
    from nuke_hdmatt.training.resampling import resize
    from nuke_hdmatt.training.sources import DevForegrounds, read_image
    src = DevForegrounds(hrc.dev_dir(), holdout=()).source(name)
    fg = srgb_to_linear(np.asarray(src.fg, np.float32) / 255.0)
    alpha = read_image(hrc.dev_dir() / "alpha" / f"{name}.png")[..., 0].astype(np.float32)
    bgs = hrc.backgrounds_6k()
    bg = read_image(bgs[index % len(bgs)])[..., :3]
    h, w = alpha.shape
    bg = srgb_to_linear(np.clip(resize(bg, h, w), 0, 1))
    return alpha, fg, bg


def trimap(name: str, which: str) -> np.ndarray:
    from nuke_hdmatt.training.sources import read_image
    t = read_image(hrc.dev_dir() / which / f"{name}.png")[..., 0]
    return np.where(t < 0.25, 0.0, np.where(t > 0.75, 1.0, 0.5)).astype(np.float32)


def dev_names() -> list[str]:
    """Every 800 px dev image, in the order that picks each one's background."""
    return sorted(p.stem for p in (hrc.dev_dir() / "alpha").glob("GT*.png"))


def setup(doc: str, argv):
    """(arguments, the engine in float32 or None without the data, the built-in OCIO config)."""
    from nuke_hdmatt.imaging import resolve_config
    args, eng = hrc.engine_from_args(argparse.ArgumentParser(description=doc.splitlines()[0]),
                                     argv, precision="fp32")
    return args, eng, resolve_config(None)[0]


def main(argv=None) -> int:
    args, eng, config = setup(__doc__, argv)
    if eng is None:
        return 2
    from nuke_hdmatt import metrics
    from nuke_hdmatt.imaging import highlight_gain, to_network_space
    from nuke_hdmatt.training import VALIDATION_IMAGES
    names = dev_names()
    rows = []  # (split, gain, name, trimap, mode, sad, mse, grad, fitted gain)
    for index, name in enumerate(names):
        alpha, fg, bg = plates(name, index)
        split = "validation" if name in VALIDATION_IMAGES else "training"
        for sky in GAINS:
            plate = alpha[..., None] * fg + (1 - alpha[..., None]) * bg * np.float32(sky)
            for which in ("trimap1", "trimap2"):
                tri = trimap(name, which)
                fitted = highlight_gain(plate, SPACE, config, tri == 0.5)
                for mode in MODES:
                    gain = fitted if mode == "fit" else 1.0
                    out = eng.matte(to_network_space(plate, SPACE, config, gain), tri)
                    rows.append((split, sky, name, which, mode, metrics.sad(out, alpha, tri),
                                 1e3 * metrics.mse(out, alpha, tri),
                                 metrics.grad(out, alpha, tri), fitted))
                print(name, sky, which, " ".join(f"{r[4]} {r[5]:.2f}" for r in rows[-2:]),
                      flush=True)
    table = []
    for split in ("validation", "training"):
        for sky in GAINS:
            for mode in MODES:
                sel = [r for r in rows if r[0] == split and r[1] == sky and r[4] == mode]
                table.append([split, f"{sky:g}x ({np.log2(sky):.0f} stops)", mode,
                              *(fmt(np.mean([r[i] for r in sel])) for i in (5, 6, 7)),
                              fmt(np.mean([1 / r[8] for r in sel]))])
    worse = [(c, f) for c, f in zip(rows[::2], rows[1::2]) if f[5] > 1.05 * c[5]]
    text = (f"## Highlights above display white in the unknown band\n\n"
            f"{machine_line(machine_info(args.threads))}.\n\n{__doc__.split(chr(10) + chr(10))[1]}"
            f"\n\nMean over 2 trimaps x {sum(n in VALIDATION_IMAGES for n in names)} validation "
            f"/ {sum(n not in VALIDATION_IMAGES for n in names)} training images; MSE x1e-3; "
            "the last column is how many times darker `fit` made the frame (1 = unchanged):\n\n"
            + markdown_table(["images", "background", "highlights", "SAD", "MSE", "Grad",
                              "darkened by"], table)
            + f"\n\nCases where `fit` is worse than `clip` by more than 5 % SAD: {len(worse)} of "
            f"{len(rows) // 2}"
            + "".join(f"; {c[2]} {c[3]} at {c[1]:g}x (fit {f[5]:.2f} against clip {c[5]:.2f})"
                      for c, f in worse) + ".\n")
    publish("highlights", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
