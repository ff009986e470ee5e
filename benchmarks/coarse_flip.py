"""Flip averaging in the cascade's coarse pass: the default cascade with its 1024 px alpha
from one network pass against the mean with the mirrored frame's (``InferenceSettings.flip``
on frames the engine cascades).

High-resolution composites of every dev image with a high-resolution ground truth (each
over one 6K background, as ``highres_strategies`` builds them): chosen on the training
images' at half size, reported on the validation images' at full and half size (which
chose nothing). The detail model is the shipped one, fitted to one-pass coarse alphas.

    .venv/bin/python -m benchmarks.coarse_flip [--threads 2]

Writes ``results/coarse_flip.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import hr_composites as hrc
from .cascade_outputs import dev_names
from .report import fmt, machine_info, machine_line, markdown_table, publish

WAYS = ("coarse pass once", "coarse pass flip-averaged")


def measure(engines: dict, frame) -> dict:
    from nuke_hdmatt import metrics
    out = {}
    for way, eng in engines.items():
        t0 = time.perf_counter()
        alpha = eng.matte(frame.image, frame.trimap)
        out[way] = {"sad": metrics.sad(alpha, frame.alpha, frame.trimap),
                    "mse": 1e3 * metrics.mse(alpha, frame.alpha, frame.trimap),
                    "grad": metrics.grad(alpha, frame.alpha, frame.trimap),
                    "s": time.perf_counter() - t0}
    return out


def main(argv=None) -> int:
    _, eng = hrc.engine_from_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                                  argv, precision="fp32")
    if eng is None:
        return 2
    # on these frames (all larger than prior_max_side) flip changes the coarse pass alone
    from nuke_hdmatt.engine import Engine
    engines = {WAYS[0]: Engine.load(device="cpu", precision="fp32", flip=False), WAYS[1]: eng}
    from nuke_hdmatt.training import VALIDATION_IMAGES
    train = [n for n in dev_names() if n not in VALIDATION_IMAGES]
    val = [n for n in dev_names() if n in VALIDATION_IMAGES]
    # each split's images over the backgrounds in turn (the validation ones as
    # highres_strategies puts them)
    runs = [(n, 2, i) for i, n in enumerate(train)] + [(n, s, i) for s in (1, 2)
                                                        for i, n in enumerate(val)]
    cases = {}
    for name, scale, index in runs:
        frame = hrc.hr_composite(name, index=index, scale=scale)
        cases[name, scale] = got = measure(engines, frame)
        print(name, scale, frame.size, " ".join(f"{w}: {r['sad']:.2f}" for w, r in got.items()),
              flush=True)
    tables = ""
    for split, scale in (("train", 2), ("val", 1), ("val", 2)):
        keys = [k for k in cases if k[1] == scale and (k[0] in VALIDATION_IMAGES) == (split == "val")]
        better = sum(cases[k][WAYS[1]]["sad"] < cases[k][WAYS[0]]["sad"] for k in keys)
        tables += (f"{'Training' if split == 'train' else 'Validation'} images at "
                   f"{'full' if scale == 1 else 'half'} size ({len(keys)} composites; flip-averaged "
                   f"better by SAD on {better}):\n\n"
                   + markdown_table(["coarse pass", "SAD", "MSE x1e-3", "Grad", "s a frame"],
                                    [[w, *(fmt(np.mean([cases[k][w][q] for k in keys]))
                                           for q in ("sad", "mse", "grad", "s"))] for w in WAYS])
                   + "\n\n")
    per = [[f"{n} {'full' if s == 1 else 'half'}", *(fmt(cases[n, s][w]["sad"]) for w in WAYS)]
           for n, s in cases]
    text = (f"## Flip averaging in the cascade's coarse pass\n\n{machine_line(machine_info())}.\n\n"
            "Default cascade (shipped weights and detail model, float32); each composite over one "
            "6K background. Chosen on the training images at half size, reported on the "
            f"validation images (which chose nothing).\n\n{tables}SAD per composite:\n\n"
            + markdown_table(["composite", *WAYS], per) + "\n")
    publish("coarse_flip", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
