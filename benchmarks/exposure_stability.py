"""How much the alpha moves with the exposure ``--exposure fit`` picks: a shot whose band's
brightness varies from frame to frame gets a different gain on each frame, and the network
is only nearly exposure-invariant (the reason ``--exposure STOPS`` exists).

Two validation images over a background 4 times display white (as ``benchmarks.exposure``
builds them), trimap1: the alpha at the fitted gain against the alpha at that gain times
0.5-1.25, over the unknown pixels.

    .venv/bin/python -m benchmarks.exposure_stability [--threads 2]

Writes ``results/exposure_stability.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import sys

import numpy as np

from .exposure import SPACE, dev_names, plates, setup, trimap
from .report import fmt, machine_info, machine_line, markdown_table, publish

IMAGES = ("GT10", "GT24")
FACTORS = (0.5, 0.8, 0.9, 1.1, 1.25)


def main(argv=None) -> int:
    args, eng, config = setup(__doc__, argv)
    if eng is None:
        return 2
    from nuke_hdmatt import metrics
    from nuke_hdmatt.imaging import exposure_gain, to_network_space
    rows = []
    names = dev_names()
    for name in IMAGES:
        alpha, fg, bg = plates(name, names.index(name))  # the background benchmarks.exposure gives it
        plate = alpha[..., None] * fg + (1 - alpha[..., None]) * bg * np.float32(4)
        tri = trimap(name, "trimap1")
        unknown = tri == 0.5
        gain = exposure_gain(plate, SPACE, config, unknown)
        base = eng.matte(to_network_space(plate, SPACE, config, gain), tri)
        for factor in FACTORS:
            out = eng.matte(to_network_space(plate, SPACE, config, gain * factor), tri)
            moved = np.abs(out - base)[unknown]
            rows.append([name, f"{factor:g}", fmt(moved.mean(), 4),
                         fmt(np.percentile(moved, 99), 3),
                         fmt(metrics.sad(out, alpha, tri)), fmt(metrics.sad(base, alpha, tri))])
            print(*rows[-1], flush=True)
    text = (f"## Exposure: how the alpha moves with the fitted gain\n\n"
            f"{machine_line(machine_info(args.threads))}.\n\n{__doc__.split(chr(10) + chr(10))[1]}"
            "\n\n" + markdown_table(["image", "gain x", "mean abs move", "99th pct move",
                                     "SAD", "SAD at the fitted gain"], rows) + "\n")
    publish("exposure_stability", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
