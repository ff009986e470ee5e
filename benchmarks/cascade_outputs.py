"""The cascade's two alphas on high-resolution composites, kept for fitting its blend.

For every dev image with a high-resolution ground truth (``hr_composites``), over each
requested 6K background: the enlarged 1024 px alpha (``detail 0``) and the full-resolution
pass started from it (``detail 1``), with the plate, trimap and ground truth, saved as
``<out>/<name>_bg<i>.npz`` (float16, with the weights' sha256); ``--scale 2`` builds the
same composites block-averaged to half size (``<name>_bg<i>_s2.npz``), so a blend can be
fitted on frames smaller than the ground truth's. An existing file is kept, so a stopped
run resumes.
``benchmarks/cascade_blend.py`` fits and measures blends of the two from these.

    .venv/bin/python -m benchmarks.cascade_outputs --backgrounds 0 1 --threads 2 [--scale 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .report import REPO

DEFAULT_OUT = REPO / "runs" / "cascade_outputs"


def dev_names() -> list[str]:
    return sorted(p.stem for p in (hrc.dev_dir() / "alpha_highres").glob("*.png"))


def output_name(name: str, index: int, scale: int = 1) -> str:
    return f"{name}_bg{index}" + (f"_s{scale}" if scale > 1 else "") + ".npz"


def output_scale(path: Path) -> int:
    """The block-averaging scale of an output file (1: full resolution)."""
    found = re.search(r"_s(\d+)$", path.stem)
    return int(found.group(1)) if found else 1


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def dump(eng, name: str, index: int, out: Path, scale: int = 1) -> Path | None:
    path = out / output_name(name, index, scale)
    if path.exists():
        return None
    frame = hrc.hr_composite(name, index, scale)
    coarse, _ = eng._prior(frame.image, frame.trimap, None, None)
    full = eng._run(frame.image, frame.trimap, coarse, None, None)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, image=frame.image.astype(np.float16),
                        trimap=frame.trimap.astype(np.float16),
                        alpha=frame.alpha.astype(np.float16),
                        coarse=coarse.astype(np.float16), full=full.astype(np.float16),
                        weights_sha256=np.array(eng.weights_sha256))
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backgrounds", type=int, nargs="+", default=[0])
    ap.add_argument("--scale", type=positive, default=1,
                    help="block-average the composites by this factor (1: full resolution)")
    args = parse_with_data(ap, argv, DEFAULT_OUT, "every one with alpha_highres")
    if args is None:
        return 2
    run_dumps(args.threads, args.out,
              [functools.partial(dump, name=name, index=index, scale=args.scale)
               for index in args.backgrounds for name in args.names or dev_names()])
    return 0


def parse_with_data(ap: argparse.ArgumentParser, argv, out: Path, names: str):
    """``ap``'s arguments with the outputs' common ones (``--names``, ``--out``,
    ``--threads``); None, said on stderr, where the shared data is missing."""
    ap.add_argument("--names", nargs="*", help=f"dev images (default: {names})")
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not hrc.data_available():
        print(f"{ap.prog}: ../shared/data (dev images, alpha_highres, 6K backgrounds) not "
              "found", file=sys.stderr)
        return None
    return args


def run_dumps(threads: int, out: Path, jobs) -> None:
    """Each ``job(eng, out=out)`` with the shipped engine on ``threads`` CPU threads, saying
    what it wrote (a job returns the file, or None where it was kept from before)."""
    import torch

    from nuke_hdmatt.engine import Engine
    torch.set_num_threads(threads)
    eng = Engine.load(device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        t0 = time.perf_counter()
        path = job(eng, out=out)
        if path is not None:
            print(f"{path.name}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
