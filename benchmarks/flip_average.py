"""Flip averaging on frames the engine does not cascade: one pass against the mean with the
mirrored frame's alpha (``InferenceSettings.flip``).

Every 800 px dev photo under trimap1 and trimap2 (the shipped weights, float32 on the CPU,
the engine's global prior solved once and given to both): SAD, MSE, Grad and Conn of the
one-pass alpha, of the mirrored frame's alpha alone and of their mean. The setting is
chosen on the training images (``train``) and reported on the validation images (``val``),
which chose nothing.

    .venv/bin/python -m benchmarks.flip_average [--threads 2]

Writes ``results/flip_average.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import hr_composites as hrc
from .lowres_outputs import TRIMAP_SETS, dev_names
from .report import fmt, machine_info, machine_line, markdown_table, publish

METRICS = ("sad", "mse", "grad", "conn")
WAYS = ("one pass", "mirrored frame alone", "mean of the two (flip)")


def measure(eng, name: str, trimap_set: str) -> dict:
    from nuke_hdmatt import metrics
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.engine.prior import global_prior
    image, trimap, gt = load_case(hrc.dev_dir(), name, trimap_set)
    prior = global_prior(image, trimap, eng.prior_max_side, eng.cfg.prior_solver)
    one = eng.matte(image, trimap, prior=prior)
    mirrored = eng.matte(image[:, ::-1].copy(), trimap[:, ::-1].copy(),
                         prior=prior[:, ::-1].copy())[:, ::-1]
    out = {}
    for way, alpha in zip(WAYS, (one, mirrored, (one + mirrored) / 2)):
        out[way] = {"sad": metrics.sad(alpha, gt, trimap), "mse": 1e3 * metrics.mse(alpha, gt, trimap),
                    "grad": metrics.grad(alpha, gt, trimap), "conn": metrics.conn(alpha, gt, trimap)}
    return out


def main(argv=None) -> int:
    _, eng = hrc.engine_from_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                                  argv, precision="fp32", flip=False)
    if eng is None:
        return 2
    from nuke_hdmatt.training import VALIDATION_IMAGES
    cases = {(n, t): measure(eng, n, t) for n in dev_names() for t in TRIMAP_SETS}
    tables = ""
    for split in ("train", "val"):
        keys = [k for k in cases if (k[0] in VALIDATION_IMAGES) == (split == "val")]
        better = {q: sum(cases[k][WAYS[2]][q] < cases[k][WAYS[0]][q] for k in keys) for q in METRICS}
        rows = [[way, *(fmt(np.mean([cases[k][way][q] for k in keys])) for q in METRICS)]
                for way in WAYS]
        tables += (f"{'Training' if split == 'train' else 'Validation'} images ({len(keys)} "
                   f"alphas; the mean better than one pass on {better['sad']} by SAD, "
                   f"{better['mse']} by MSE, {better['grad']} by Grad, {better['conn']} by Conn):"
                   f"\n\n" + markdown_table(["alpha", "SAD", "MSE x1e-3", "Grad", "Conn"], rows)
                   + "\n\n")
    per = [[f"{n} {t}", *(fmt(cases[n, t][w]["sad"]) for w in WAYS)] for n, t in cases]
    text = (f"## Flip averaging on frames within 1024 px\n\n{machine_line(machine_info())}.\n\n"
            f"The 800 px dev photos under trimap1 and trimap2, the shipped weights (float32), the "
            f"engine's global prior solved once for both passes. Chosen on the training images, "
            f"reported on the validation images (which chose nothing).\n\n{tables}"
            "SAD per alpha:\n\n" + markdown_table(["image", *WAYS], per) + "\n")
    publish("flip_average", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
