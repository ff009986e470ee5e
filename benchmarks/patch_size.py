"""Patch size and overlap on frames within 1024 px: does the engine's cut of the frame move
the alpha?

Every 800 px dev photo under trimap1 and trimap2, the shipped weights (float32, the engine's
other defaults, flip averaging included), the engine's global prior solved once per case and
given to every setting: mean SAD, MSE and Grad for each ``patch/overlap``. A setting would be
chosen on the training images and reported on the validation images (which chose nothing).

    .venv/bin/python -m benchmarks.patch_size [--settings 320/32 256/32 ...] [--threads 2]

Writes ``results/patch_size.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import hr_composites as hrc
from .lowres_outputs import TRIMAP_SETS, dev_names
from .report import fmt, machine_info, machine_line, markdown_table, publish

SETTINGS = ("320/32", "256/32", "384/32", "448/32", "512/32", "640/32", "320/64")
METRICS = ("sad", "mse", "grad")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="PATCH/OVERLAP")
    args, eng = hrc.engine_from_args(ap, argv, precision="fp32")
    if eng is None:
        return 2
    from nuke_hdmatt import metrics
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.engine.prior import global_prior
    from nuke_hdmatt.training import VALIDATION_IMAGES

    cases = {(n, t): load_case(hrc.dev_dir(), n, t) for n in dev_names() for t in TRIMAP_SETS}
    priors = {k: global_prior(image, trimap, eng.prior_max_side, eng.cfg.prior_solver)
              for k, (image, trimap, _) in cases.items()}
    scores: dict = {}
    seconds = {}
    for setting in args.settings:
        patch, overlap = (int(v) for v in setting.split("/"))
        e = Engine.load(device="cpu", precision="fp32", patch=patch, overlap=overlap)
        t0 = time.perf_counter()
        for k, (image, trimap, gt) in cases.items():
            a = e.matte(image, trimap, prior=priors[k])
            scores[setting, k] = {"sad": metrics.sad(a, gt, trimap),
                                  "mse": 1e3 * metrics.mse(a, gt, trimap),
                                  "grad": metrics.grad(a, gt, trimap)}
        seconds[setting] = time.perf_counter() - t0
        print(f"{setting}: {seconds[setting]:.0f} s", flush=True)
    rows = []
    for setting in args.settings:
        row = [setting]
        for split in ("train", "val"):
            keys = [k for k in cases if (k[0] in VALIDATION_IMAGES) == (split == "val")]
            row += [fmt(np.mean([scores[setting, k][q] for k in keys]), 3) for q in METRICS]
        rows.append(row + [fmt(seconds[setting] / seconds[args.settings[0]])])
    header = ["patch/overlap"] + [f"{s} {q}" for s in ("training", "validation")
                                  for q in ("SAD", "MSE x1e-3", "Grad")] + \
        [f"time vs {args.settings[0]}"]
    text = (f"## Patch size and overlap on frames within 1024 px\n\n"
            f"{machine_line(machine_info())}.\n\nThe 800 px dev photos under trimap1 and "
            f"trimap2 ({len(cases)} alphas: 26 of the training images, 10 of the validation "
            f"images), the shipped weights (float32, flip averaging on), the global prior "
            f"solved once per case for every setting.\n\n" + markdown_table(header, rows) + "\n")
    publish("patch_size", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
