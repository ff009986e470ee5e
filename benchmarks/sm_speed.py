"""Shared matting's torch port against the same file at another commit: time and alpha.

Synthetic 1K frames (``engine_scaling.synthetic_plate`` over the first 6K background) at 5,
15 and 30 % unknown; both versions in one process, interleaved, best of ``--repeats``.

    .venv/bin/python -m benchmarks.sm_speed --against c6b7813 [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import REPO

MODULE = "nuke_hdmatt/engine/shared_matting.py"


def module_at(rev: str, folder: Path):
    """``MODULE`` as it was at ``rev``, importable beside this checkout's package."""
    text = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
    path = folder / "shared_matting_then.py"
    path.write_text(text.replace("from ..errors import", "from nuke_hdmatt.errors import"))
    spec = importlib.util.spec_from_file_location("shared_matting_then", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="git revision to compare with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    from nuke_hdmatt.engine import shared_matting as now
    from nuke_hdmatt.training.sources import read_image

    from . import engine_scaling, hr_composites
    if not hr_composites.data_available():
        print("sm_speed: ../shared/data not found", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    bg = read_image(hr_composites.backgrounds_6k()[0])[..., :3].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        then = module_at(args.against, Path(tmp))
        print(f"| unknown | {args.against} s | now s | ratio | max abs alpha difference |")
        print("|---|---:|---:|---:|---:|")
        for fraction in (0.05, 0.15, 0.30):
            image, trimap, _ = engine_scaling.synthetic_plate(1024, 576, fraction, bg)
            im, tr = torch.from_numpy(image), torch.from_numpy(trimap)
            seconds: dict = {then: [], now: []}
            alphas = {}
            for _ in range(args.repeats):
                for version in (then, now):
                    t0 = time.perf_counter()
                    alphas[version] = version.estimate_alpha_sm(im, tr)
                    seconds[version].append(time.perf_counter() - t0)
            a, b = min(seconds[then]), min(seconds[now])
            diff = float((alphas[then] - alphas[now]).abs().max())
            print(f"| {fraction:.0%} | {a:.2f} | {b:.2f} | {b / a:.2f} | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
