"""The engine's scaling rows and the 6K frame's time split on one device (issue 16).

Synthetic plates (``engine_scaling.synthetic_plate`` over a procedural background, so no
shared data is needed: the GPU machine has none): 1K-8K at 5 / 15 / 30 % unknown pixels
(6K and 8K at 15 % only, to keep a GPU run short), then a 6000x4000 frame at 10 % and 15 %
unknown split into prior (classical solve at 1024 px), network (encode, CPC, TGNL, decode,
both cascade passes), guided upsampling, the detail stage and other. Each row: wall time after a warm-up
frame, peak GPU memory (``torch.cuda.max_memory_allocated``) on CUDA, peak RSS during the
frame (the high-water mark reset before it: the frame's inputs and the engine, not the
rows before it).

    python3 -m benchmarks.gpu_check --device cuda --out "$OUT"        # benchmarks/gpu_check.sh
    .venv/bin/python -m benchmarks.gpu_check --device cpu --threads 2 --rows 6k   # the split on CPU

Writes ``gpu_check.md`` and ``gpu_check.json`` into ``--out``; with ``--profile``, each row is
run once more under cProfile (no stage clock, so no waits for the device but the engine's own)
and the functions that took the host longest written to ``profile_<size>_<unknown>.txt``: on a
GPU, what the host does while the device waits.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np

from nuke_hdmatt.atomic import write_text_atomic

from .engine_scaling import SIZES, synthetic_plate
from .methods import StageClock, peak_rss_mib, reset_peak_rss
from .report import machine_info, machine_line, markdown_table

NETWORK = ("encode", "cpc", "tgnl", "decode")


def background(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like procedural background: smooth colour fields plus fine texture."""
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for scale, weight in ((256, 0.6), (32, 0.25), (4, 0.15)):
        low = torch.from_numpy(rng.random((1, 3, max(2, h // scale), max(2, w // scale)), dtype=np.float32))
        up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        out += weight * up[0].permute(1, 2, 0).numpy()
    return out


def rows_wanted(which: str) -> list[tuple[str, int, int, float]]:
    # the 6K frame first: the targets are set on it, and a short budget may cut the rest
    rows = []
    if which in ("all", "6k"):
        rows += [("6K frame", 6000, 4000, 0.15), ("6K frame", 6000, 4000, 0.10)]
    if which in ("all", "scaling"):
        big = [(s, wh) for s, wh in SIZES.items() if s not in ("1K", "2K", "4K")]
        for size, (w, h) in big[::-1]:
            rows.append((size, w, h, 0.15))
        for size, (w, h) in SIZES.items():
            if size in ("1K", "2K", "4K"):
                rows += [(size, w, h, frac) for frac in (0.05, 0.15, 0.30)]
    return rows


def measure(eng, image, trimap) -> dict:
    import torch
    cuda = eng.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stages: dict = {}
    reset_peak_rss()     # the frame's own peak: earlier rows and their plates are gone by now
    t0 = time.perf_counter()
    with StageClock(eng, stages):
        eng.matte(image, trimap)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    network = sum(stages.get(k, 0.0) for k in NETWORK)
    timed = {k: stages.get(k, 0.0) for k in ("prior", "upsample", "detail")}
    row = {"wall_s": wall, "prior_s": timed["prior"], "network_s": network,
           "guided_s": timed["upsample"], "detail_s": timed["detail"],
           "other_s": wall - network - sum(timed.values()), "peak_rss_mib": peak_rss_mib()}
    if cuda:
        row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return row


def profile(eng, image, trimap, path: Path) -> None:
    prof = cProfile.Profile()
    prof.enable()
    eng.matte(image, trimap)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(40)
    write_text_atomic(path, text.getvalue())


def write(out: Path, info: dict, warm_s: float, results: list) -> None:
    write_text_atomic(out / "gpu_check.json",
                      json.dumps({"info": info, "warm_up_s": warm_s, "rows": results}, indent=1))
    cols = ["size", "w x h", "unknown", "total s", "prior s", "network s", "guided s", "detail s",
            "other s", "peak GPU GiB", "peak RSS MiB"]
    table = markdown_table(cols, [[r["size"], f"{r['w']}x{r['h']}", f"{r['unknown']:.0%}", r["wall_s"],
                                   r["prior_s"], r["network_s"], r["guided_s"], r["detail_s"],
                                   r["other_s"], r.get("peak_gpu_gib"), r["peak_rss_mib"]]
                                  for r in results])
    write_text_atomic(out / "gpu_check.md",
                      f"## Engine on {info['device']}\n\n{machine_line(info)}.\n\n"
                      f"Warm-up (first 1K frame, not in the table): {warm_s:.1f} s.\n\n{table}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--rows", choices=("all", "scaling", "6k"), default="all")
    ap.add_argument("--sizes", nargs="*", help="only these sizes (e.g. 1K 6K 'frame')")
    ap.add_argument("--out", default=".", help="folder for gpu_check.md / .json")
    ap.add_argument("--profile", action="store_true", help="each row once more under cProfile")
    args = ap.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from nuke_hdmatt.engine import Engine
    eng = Engine.load(device=args.device)
    info = machine_info(args.threads, eng.device.type)
    rows = [r for r in rows_wanted(args.rows) if not args.sizes or any(s in r[0] for s in args.sizes)]
    warm = synthetic_plate(1024, 540, 0.15, background(540, 1024))
    t0 = time.perf_counter()
    eng.matte(*warm[:2])
    warm_s = time.perf_counter() - t0
    print(f"warm-up 1K frame: {warm_s:.1f} s", flush=True)
    results = []
    out = Path(args.out)
    for label, w, h, frac in rows:
        image, trimap, _ = synthetic_plate(w, h, frac, background(h, w))
        row = {"size": label, "w": w, "h": h, "unknown": frac, **measure(eng, image, trimap)}
        results.append(row)
        print(json.dumps(row), flush=True)
        write(out, info, warm_s, results)          # after every row: a timeout keeps the rest
        if args.profile:
            profile(eng, image, trimap, out / f"profile_{label.replace(' ', '_')}_{frac:.2f}.txt")
    print((out / "gpu_check.md").read_text() if results else "no rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
