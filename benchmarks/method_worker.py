"""Child process of :func:`methods.run_isolated`: one method on one frame, so that the
process's RSS high-water mark belongs to that method alone.

Reads image.npy / trimap.npy (and prior.npy) from --dir, writes alpha.npy and stats.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .methods import peak_rss_mib, reset_peak_rss, rss_now_mib, run_method, warm_up


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    spec = json.loads(args.spec)
    folder = Path(args.dir)
    import torch
    torch.set_num_threads(args.threads)
    image = np.load(folder / "image.npy")
    trimap = np.load(folder / "trimap.npy")
    prior = np.load(folder / "prior.npy") if (folder / "prior.npy").exists() else None
    warm_up(spec)
    reset = reset_peak_rss()
    base = rss_now_mib() if reset else peak_rss_mib()
    stages: dict = {}
    t0 = time.perf_counter()
    alpha = run_method(spec, image, trimap, stages, prior=prior)
    wall = time.perf_counter() - t0
    stats = {"wall_s": wall, "peak_rss_mib": peak_rss_mib(), "base_rss_mib": base,
             "stages": stages, "frame_mib": (image.nbytes + trimap.nbytes) / 2**20, "peak_reset": reset}
    if spec["kind"] == "hdmatt":
        from .methods import load_engine
        eng = load_engine(spec)
        stats["engine"] = eng.params()
        stats["weights_id"] = eng.weights_id
    np.save(folder / "alpha.npy", alpha)
    (folder / "stats.json").write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
