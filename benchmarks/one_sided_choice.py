"""How the background-only reach of the one-sided prior was chosen (docs/ENGINE.md, "A trimap
of one known region"): the engine on trimaps with only background known, at reach 0.03, at
0.3 and with the 0.5 prior, on the 13 training dev photos (foreground made unknown) and on
see-through scenes of seed 424242 (not the failure_modes benchmark's). The rule, fixed
before scoring: the reach whose SAD relative to the 0.5 prior's, averaged over the two sets
with equal weight, is lowest. The validation photos take no part.

    .venv/bin/python -m benchmarks.one_sided_choice [--threads 2]    # about 6 minutes

Prints a line per case and the rule's figures.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import failure_modes as fm
from . import hr_composites as hrc
from .lowres_outputs import dev_names

WAYS = {"0.5": None, "0.03": 0.03, "0.3": 0.3}
SEED = 424_242


def cases() -> dict[str, list]:
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.training import VALIDATION_IMAGES
    sets: dict[str, list] = {"dev": [], "synth": []}
    for name in dev_names():
        if name not in VALIDATION_IMAGES:
            image, trimap, gt = load_case(hrc.dev_dir(), name, "trimap1")
            sets["dev"].append((name, image, np.where(trimap == 1.0, 0.5, trimap), gt))
    fm.SEED = SEED
    for kind in ("fabric", "mesh", "smoke", "overlap"):
        for i, (image, trimap, alpha) in enumerate(fm.scenes(kind, 6, 512)):
            if (trimap == 0).any() and not (trimap == 1).any():
                sets["synth"].append((f"{kind}{i}", image, trimap, alpha))
    return sets


def main(argv=None) -> int:
    _, eng = hrc.engine_from_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                                  argv, precision="fp32")
    if eng is None:
        return 2
    from nuke_hdmatt.engine import prior as P
    from nuke_hdmatt.metrics import sad
    sets, out, shipped = cases(), {}, P.ONE_SIDED_REACH
    try:
        for group, group_cases in sets.items():
            for name, image, trimap, gt in group_cases:
                row = {}
                for way, reach in WAYS.items():
                    P.ONE_SIDED_REACH = None if reach is None else {0.0: reach, 1.0: reach}
                    row[way] = sad(eng.matte(image, trimap.astype(np.float32)), gt, trimap)
                out[group, name] = row
                print(group, name, " ".join(f"{k}: {v:.2f}" for k, v in row.items()), flush=True)
    finally:
        P.ONE_SIDED_REACH = shipped
    for way in WAYS:
        rel = [np.mean([r[way] / r["0.5"] for (g, _), r in out.items() if g == group]) for group in sets]
        print(f"reach {way}: SAD relative to the 0.5 prior, dev {rel[0]:.3f}, synthetic {rel[1]:.3f}, "
              f"mean {np.mean(rel):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
