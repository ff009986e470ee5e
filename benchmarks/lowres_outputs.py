"""The classical prior and the network's alpha on frames the engine does not cascade, kept
for fitting a blend of the two.

Frames within the engine's ``prior_max_side`` (1024 px) get the global classical prior and
the network's whole answer. For every 800 px dev image, under trimap1 and trimap2: the photo
itself, and its foreground (PyMatting's colours, as training uses them) composited over a
crop of each requested 6K background reduced 4x (about the dev images' scale). Saved as
``<out>/<name>_<trimap>_<background>.npz`` in ``benchmarks/cascade_outputs.py``'s layout
(``coarse`` = the prior, ``full`` = the network; float16, with the weights' sha256), so
``benchmarks/cascade_blend.py --dir`` fits and measures blends of the two. An existing file
is kept, so a stopped run resumes.

    .venv/bin/python -m benchmarks.lowres_outputs --backgrounds 0 1 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .cascade_outputs import parse_with_data, run_dumps
from .report import REPO

DEFAULT_OUT = REPO / "runs" / "lowres_outputs"
TRIMAP_SETS = ("trimap1", "trimap2")
BACKGROUND_SCALE = 4


def dev_names() -> list[str]:
    return sorted(p.stem for p in (hrc.dev_dir() / "alpha").glob("*.png"))


def frame(name: str, trimap_set: str, background: int | None):
    """(image, trimap, alpha) of the photo (``background`` None) or of its foreground over
    a crop of 6K background ``background`` reduced :data:`BACKGROUND_SCALE` x."""
    from nuke_hdmatt.devset import load_case
    image, trimap, alpha = load_case(hrc.dev_dir(), name, trimap_set)
    if background is None:
        return image, trimap, alpha
    from nuke_hdmatt.training.compositing import composite
    from nuke_hdmatt.training.resampling import reduce_blocks
    from nuke_hdmatt.training.sources import DevForegrounds
    fg = np.asarray(DevForegrounds(hrc.dev_dir(), holdout=()).source(name).fg, np.float32) / 255
    bgs = hrc.backgrounds_6k()
    bg = reduce_blocks(hrc._read_rgb(bgs[background % len(bgs)]), BACKGROUND_SCALE)
    h, w = alpha.shape
    y0, x0 = (bg.shape[0] - h) // 2, (bg.shape[1] - w) // 2
    return composite(fg, bg[y0:y0 + h, x0:x0 + w], alpha), trimap, alpha


def output_name(name: str, trimap_set: str, background: int | None) -> str:
    return f"{name}_{trimap_set}_" + ("photo" if background is None else f"bg{background}") + ".npz"


def dump(eng, name: str, trimap_set: str, background: int | None, out: Path) -> Path | None:
    path = out / output_name(name, trimap_set, background)
    if path.exists():
        return None
    image, trimap, alpha = frame(name, trimap_set, background)
    if max(trimap.shape) > eng.prior_max_side:
        raise SystemExit(f"lowres_outputs: {name} is cascaded (larger than the prior's side)")
    prior, _ = eng._prior(image, trimap, None, None)
    full = eng._run(image, trimap, prior, None, None)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, image=image.astype(np.float16), trimap=trimap.astype(np.float16),
                        alpha=alpha.astype(np.float16), coarse=prior.astype(np.float16),
                        full=full.astype(np.float16), weights_sha256=np.array(eng.weights_sha256))
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backgrounds", type=int, nargs="*", default=[0, 1, 2, 3])
    args = parse_with_data(ap, argv, DEFAULT_OUT, "all")
    if args is None:
        return 2
    run_dumps(args.threads, args.out,
              [functools.partial(dump, name=name, trimap_set=trimap_set, background=background)
               for background in [None, *args.backgrounds] for name in args.names or dev_names()
               for trimap_set in TRIMAP_SETS])
    return 0


if __name__ == "__main__":
    sys.exit(main())
