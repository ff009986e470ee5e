"""The torch prior solvers against PyMatting's (issue 16): closed-form (``cf``) and shared
matting (``sm``) on the alphamatting-dev images with trimap1 and trimap2.

Per case: the mean absolute alpha difference over the trimap's unknown pixels between the
engine's solve (``nuke_hdmatt.engine.prior.solve``) and PyMatting's ``estimate_alpha_cf`` /
``estimate_alpha_sm`` (the peer, an optional extra), and both solve times from the same run
(PyMatting warmed up first: numba compiles its kernels on first call).

    .venv/bin/python -m benchmarks.prior_ports --names GT05 GT24 --threads 2
    .venv/bin/python -m benchmarks.prior_ports                 # all 18 images

Writes ``results/prior_ports.md`` and a RESULTS.md section.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from nuke_hdmatt.devset import load_case

from .quality_lowres import TRIMAP_SETS, find_dev_images
from .report import machine_info, machine_line, markdown_table, publish

SOLVERS = ("cf", "sm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="*")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="validation images only")
    args = ap.parse_args(argv)
    if not find_dev_images(args, "prior_ports"):
        return 2
    import pymatting

    from nuke_hdmatt.engine.prior import solve
    peers = {"cf": pymatting.estimate_alpha_cf, "sm": pymatting.estimate_alpha_sm}
    rng = np.random.default_rng(0)
    tiny = rng.random((48, 48, 3))
    tri = np.zeros((48, 48))
    tri[16:32], tri[32:] = 0.5, 1.0
    for s in SOLVERS:                                    # numba compiles each kernel once
        peers[s](tiny, tri)
        solve(tiny.astype(np.float32), tri.astype(np.float32), s)
    info = machine_info(args.threads)
    rows, sums = [], {s: [] for s in SOLVERS}
    for name in args.names:
        for ts in TRIMAP_SETS:
            image, trimap, _ = load_case(args.dev, name, ts)
            image = np.clip(image, 0, 1)
            u = trimap == 0.5
            row = [name, ts, f"{u.mean():.1%}"]
            for s in SOLVERS:
                t0 = time.perf_counter()
                want = np.clip(peers[s](image.astype(np.float64), trimap.astype(np.float64)), 0, 1)
                t1 = time.perf_counter()
                got = solve(image, trimap, s)
                t2 = time.perf_counter()
                mad = float(np.abs(got - want)[u].mean())
                sums[s].append((mad, t1 - t0, t2 - t1))
                row += [f"{mad:.5f}", t1 - t0, t2 - t1]
            rows.append(row)
            print(" ".join(str(v) for v in row), flush=True)
    for label, fn in (("mean", np.mean), ("max", np.max)):
        row = [f"**{label}**", "", ""]
        for s in SOLVERS:
            a = np.array(sums[s])
            row += [f"{fn(a[:, 0]):.5f}", fn(a[:, 1]), fn(a[:, 2])]
        rows.append(row)
    header = ["image", "trimap", "unknown"] + [f"{s} {c}" for s in SOLVERS
                                                for c in ("mean abs diff", "PyMatting s", "torch s")]
    text = ("## Torch prior solvers vs PyMatting\n\n"
            f"{machine_line(info)}.\n\nMean absolute alpha difference over the unknown pixels between "
            "the engine's torch solve and PyMatting's (the peer), and both times from this run.\n\n"
            + markdown_table(header, rows))
    publish("prior_ports", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
