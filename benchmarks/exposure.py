"""The plate's exposure for the network: every frame as it is (``--exposure off``: clipped
to white, the engine's input before 2026-12-07) against each frame's exposure fitted to its
unknown band (``--exposure fit``, the default; ``imaging.colour.exposure_gain``): darker where
the band holds highlights above display white, brighter where it peaks below half of it.

The 800 px dev images (ground-truth alpha, PyMatting's foreground colours) over a 6K
background photo reduced to their size, composited in linear Rec.709: the whole plate 4 and
2 stops under, as photographed, and with the background 4 and 16 times as bright (a sky 2
and 4 stops over display white); trimap1 and trimap2; the engine with its defaults, float32.
The brightening floor (half of white) was chosen on the training images among 0, 1/4, 1/2
and 1, so their rows are not a fair test of it; the validation rows are. The darkening rule
was fixed before any run.

    .venv/bin/python -m benchmarks.exposure [--training] [--threads 2]

Writes ``results/exposure.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import hr_composites as hrc
from .report import fmt, machine_info, machine_line, markdown_table, publish

# (label, whole plate x, background x)
CASES = (("plate 4 stops under", 1 / 16, 1.0), ("plate 2 stops under", 1 / 4, 1.0),
         ("as photographed", 1.0, 1.0), ("background 2 stops over white", 1.0, 4.0),
         ("background 4 stops over white", 1.0, 16.0))
MODES = ("off", "fit")
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


def setup(doc: str, argv, *options):
    """(arguments, the engine in float32 or None without the data, the built-in OCIO config);
    ``options``: (flag, help) of store_true options to add."""
    from nuke_hdmatt.imaging import resolve_config
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, text in options:
        ap.add_argument(flag, action="store_true", help=text)
    args, eng = hrc.engine_from_args(ap, argv, precision="fp32")
    return args, eng, resolve_config(None)[0]


def main(argv=None) -> int:
    args, eng, config = setup(__doc__, argv, ("--training", "the training images too (40 min "
                                                          "more on 2 cores)"))
    if eng is None:
        return 2
    from nuke_hdmatt import metrics
    from nuke_hdmatt.imaging import exposure_gain, to_network_space
    from nuke_hdmatt.training import VALIDATION_IMAGES
    names = dev_names()
    rows = []  # (split, case, name, trimap, mode, sad, mse, grad, fitted gain)
    for index, name in enumerate(names):
        if not (args.training or name in VALIDATION_IMAGES):
            continue
        alpha, fg, bg = plates(name, index)
        split = "validation" if name in VALIDATION_IMAGES else "training"
        for case, whole, sky in CASES:
            plate = (alpha[..., None] * fg
                     + (1 - alpha[..., None]) * bg * np.float32(sky)) * np.float32(whole)
            for which in ("trimap1", "trimap2"):
                tri = trimap(name, which)
                fitted = exposure_gain(plate, SPACE, config, tri == 0.5)
                done: dict = {}
                for mode in MODES:
                    gain = fitted if mode == "fit" else 1.0
                    if gain not in done:
                        out = eng.matte(to_network_space(plate, SPACE, config, gain), tri)
                        done[gain] = (metrics.sad(out, alpha, tri),
                                      1e3 * metrics.mse(out, alpha, tri),
                                      metrics.grad(out, alpha, tri))
                    rows.append((split, case, name, which, mode, *done[gain], fitted))
                print(name, case, which, " ".join(f"{r[4]} {r[5]:.2f}" for r in rows[-2:]),
                      flush=True)
    table = []
    for split in ("validation", "training")[:2 if args.training else 1]:
        for case, _, _ in CASES:
            for mode in MODES:
                sel = [r for r in rows if r[0] == split and r[1] == case and r[4] == mode]
                table.append([split, case, mode, *(fmt(np.mean([r[i] for r in sel])) for i in (5, 6, 7)),
                              fmt(np.mean([np.log2(r[8]) for r in sel]))])
    worse = [(c, f) for c, f in zip(rows[::2], rows[1::2]) if f[5] > 1.05 * c[5]]
    text = (f"## The plate's exposure for the network\n\n"
            f"{machine_line(machine_info(args.threads))}.\n\n{__doc__.split(chr(10) + chr(10))[1]}"
            f"\n\nMean over 2 trimaps x "
            + " / ".join(f"{len({r[2] for r in rows if r[0] == split})} {split}"
                         for split in ("validation", "training")[:2 if args.training else 1])
            + " images; MSE x1e-3; "
            "the last column is the mean exposure change `fit` made, in stops:\n\n"
            + markdown_table(["images", "plate", "exposure", "SAD", "MSE", "Grad",
                              "fit's stops"], table)
            + f"\n\nCases where `fit` is worse than `off` by more than 5 % SAD: {len(worse)} of "
            f"{len(rows) // 2}"
            + "".join(f"; {c[2]} {c[3]}, {c[1]} (fit {f[5]:.2f} against off {c[5]:.2f})"
                      for c, f in worse) + ".\n")
    publish("exposure", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
