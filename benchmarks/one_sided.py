"""Trimaps of one known region: the colour prior of ``engine.prior.one_sided_prior`` against
the 0.5 it replaced, alone and through the engine (its shipped reaches: 0.03 with only
foreground known, 0.3 with only background).

Every 800 px dev photo under trimap1, its background made unknown (``F only``: a subject
filling the frame, its edges marked unknown) or its foreground (``B only``). The prior alone
at several reaches (colour distance at which an unknown pixel is the other side's), and the
shipped engine (float32, defaults) with the 0.5 prior and with the shipped reach. The
foreground-only reach was chosen on the training images' priors, the background-only one on
the training images and on see-through scenes of a seed of their own (the rule is in
docs/ENGINE.md); the validation images chose nothing.

    .venv/bin/python -m benchmarks.one_sided [--threads 2]

About 15 minutes on 2 threads (the unknown regions are most of each frame). Writes
``results/one_sided.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import hr_composites as hrc
from .lowres_outputs import dev_names
from .report import fmt, machine_info, machine_line, markdown_table, publish

REACHES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.3)
SIDES = ("F only", "B only")


def measure(eng, name: str, side: str) -> dict:
    from nuke_hdmatt import metrics
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.engine import prior as P
    image, trimap, gt = load_case(hrc.dev_dir(), name, "trimap1")
    t = trimap.copy()
    t[t == (0.0 if side == "F only" else 1.0)] = 0.5
    out = {"prior 0.5": metrics.sad(t, gt, t)}        # the unknown pixels at 0.5
    for reach in REACHES:
        out[f"prior {reach:g}"] = metrics.sad(P.one_sided_prior(image, t, reach), gt, t)
    shipped = P.ONE_SIDED_REACH
    try:
        P.ONE_SIDED_REACH = None
        out["engine, 0.5 prior"] = metrics.sad(eng.matte(image, t), gt, t)
    finally:
        P.ONE_SIDED_REACH = shipped
    out["engine, colour prior"] = metrics.sad(eng.matte(image, t), gt, t)
    return out


def main(argv=None) -> int:
    _, eng = hrc.engine_from_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                                  argv, precision="fp32")
    if eng is None:
        return 2
    from nuke_hdmatt.training import VALIDATION_IMAGES
    cases = {(n, s): measure(eng, n, s) for n in dev_names() for s in SIDES}
    ways = list(next(iter(cases.values())))
    rows = []
    for side in SIDES:
        for split in ("train", "val"):
            keys = [k for k in cases if k[1] == side and (k[0] in VALIDATION_IMAGES) == (split == "val")]
            rows.append([side, split, *(fmt(np.mean([cases[k][w] for k in keys])) for w in ways)])
    worse = [f"{n} {s}" for (n, s), r in cases.items() if r[ways[-1]] > r[ways[-2]]]
    text = (f"## Trimaps of one known region\n\n{machine_line(machine_info())}.\n\n"
            "The 800 px dev photos under trimap1 with the background (F only) or the foreground "
            "(B only) made unknown; mean SAD over the unknown pixels. The shipped reaches "
            "(0.03 with F only, 0.3 with B only) chose nothing on the validation images.\n\n"
            + markdown_table(["trimap", "images", *ways], rows)
            + f"\n\nThe engine with the colour prior is worse than with 0.5 on {len(worse)} of "
            f"{len(cases)}: {', '.join(worse) or 'none'}.\n\nSAD per case:\n\n"
            + markdown_table(["case", *ways], [[f"{n} {s}", *(fmt(r[w]) for w in ways)]
                                               for (n, s), r in cases.items()]) + "\n")
    publish("one_sided", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
