"""Contact sheet of training samples, to look at what the network is fed::

    python -m nuke_hdmatt.training.contact_sheet --out sheet.png --n 16 [--patch 192]
        [--seed 0] [--prior] [--from DIR]

One row per sample: query image, trimap, ground-truth alpha, prior (when there is one),
foreground over grey (checks the estimated colours), then the context patches. ``--from``
reads samples built by ``python -m nuke_hdmatt.training.dataset build`` instead of
synthesising new ones.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from ..atomic import write_png_atomic
from ..errors import OutputError, UsageError, run_reporting

__all__ = ["sample_row", "contact_sheet", "main"]

_GAP = 4


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def sample_row(sample: dict) -> np.ndarray:
    """One sample as an (p, W, 3) float32 strip (sRGB 0-1, values displayed as they are)."""
    p = sample["alpha"].shape[-1]
    gap = np.ones((p, _GAP, 3), np.float32)
    img = sample["image"].transpose(0, 2, 3, 1)
    fg = sample["fg"][0].transpose(1, 2, 0)
    a = sample["alpha"][0][..., None]
    tiles = [img[0], _rgb(sample["trimap"][0]), _rgb(sample["alpha"][0])]
    if "prior" in sample:
        tiles.append(_rgb(sample["prior"][0]))
    tiles.append(a * fg + (1 - a) * 0.5)
    tiles += list(img[1:])
    row = []
    for t in tiles:
        row += [t, gap]
    return np.concatenate(row[:-1], axis=1)


def contact_sheet(samples) -> np.ndarray:
    """Stack sample rows (padded to the widest) into one (H, W, 3) float32 image."""
    rows = [sample_row(s) for s in samples]
    width = max(r.shape[1] for r in rows)
    padded = []
    for r in rows:
        pad = np.ones((r.shape[0], width - r.shape[1], 3), np.float32)
        padded += [np.concatenate([r, pad], axis=1), np.ones((_GAP, width, 3), np.float32)]
    return np.concatenate(padded[:-1], axis=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nuke_hdmatt.training.contact_sheet",
                                 description="Write a PNG contact sheet of training samples.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--patch", type=int, default=192)
    ap.add_argument("--context", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", action="store_true", help="solve the closed-form prior (slow)")
    ap.add_argument("--from", dest="source", default=None, help="a built sample folder")
    args = ap.parse_args(argv)

    def body():
        if args.n < 1:
            raise UsageError("--n must be >= 1")
        if args.source:
            from .dataset import load_sample, sample_paths

            paths = sample_paths(args.source)
            if not paths:
                raise UsageError("no samples in folder", path=args.source)
            samples = [load_sample(p) for p in paths[:args.n]]
        else:
            from .synthesis import SampleSynthesizer, SynthesisConfig

            cfg = SynthesisConfig.for_patch(args.patch, n_context=args.context, prior=args.prior)
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                synth = SampleSynthesizer(cfg)
            samples = []
            for i in range(args.n):
                samples.append(synth(np.random.default_rng([args.seed, i])))
                print(f"  sample {i + 1}/{args.n}: {', '.join(samples[-1]['names'])}",
                      file=sys.stderr, flush=True)
        try:
            write_png_atomic(args.out, contact_sheet(samples))
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", path=args.out) from None
        print(f"wrote {args.out}", file=sys.stderr)

    return run_reporting("contact_sheet", body)


if __name__ == "__main__":
    sys.exit(main())
