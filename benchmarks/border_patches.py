"""Which clean patches pass 1 encodes as context (issues 16 and 19): every clean patch
beside a query (the rule before 2026-12-06) against only those offering a region (a whole
foreground or background feature cell) that a query beside them lacks (the engine's rule,
:func:`nuke_hdmatt.engine.pool.border_cells`).

Quality on the composites ``highres_strategies.py`` builds (the validation images' real
high-resolution alphas over native crops of the 6K backgrounds), with the default cascade
and with the global prior (full-resolution patches with cross-patch context, the rows the
issue's CPC target compares); then the 6K frame's stage times, the two rules interleaved in
one process so that the ratio holds on a shared machine.

    .venv/bin/python -m benchmarks.border_patches --threads 2 [--quick]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np

from . import hr_composites as hrc
from .report import machine_info, machine_line, markdown_table, publish

RULES = ("every clean neighbour", "offering what a query lacks (default)")


def _engine(rule: str, **settings):
    """An engine whose pass 1 follows ``rule`` (the first: region test switched off)."""
    from nuke_hdmatt.engine import Engine, pool, streamed_pass
    streamed_pass.border_cells = (
        (lambda queries, shape, regions=None: pool.border_cells(queries, shape))
        if rule == RULES[0] else pool.border_cells)
    return Engine.load(device="cpu", **settings)


def _timed(eng, frame) -> tuple[np.ndarray, dict]:
    stages: collections.Counter = collections.Counter()
    encoded = []
    eng.on_stage = lambda name, s: stages.__setitem__(name, stages[name] + s)
    encode = eng.net.encode

    def count(x, deep=None):
        if deep is None:
            encoded.append(x.shape[0])
        return encode(x, deep)
    eng.net.encode = count
    t0 = time.perf_counter()
    alpha = eng.matte(frame.image, frame.trimap)
    stages["total"] = time.perf_counter() - t0
    stages["encoded"] = sum(encoded)
    eng.net.encode = encode
    return alpha, dict(stages)


def quality(names, scale) -> list[list]:
    from nuke_hdmatt.metrics import all_metrics
    rows = []
    for prior, detail in (("cascade", "auto"), ("global", 1.0)):
        scores: dict = {rule: [] for rule in RULES}
        for i, name in enumerate(names):
            frame = hrc.hr_composite(name, index=i, scale=scale)
            for rule in RULES:
                alpha, st = _timed(_engine(rule, prior=prior, detail=detail), frame)
                m = all_metrics(alpha, frame.alpha, frame.trimap)
                scores[rule].append({**m, "encoded": st["encoded"], "encode": st.get("encode", 0.0)})
                print(f"{name} {prior} {rule}: SAD {m['sad']:.2f}, {st['encoded']} encodes", flush=True)
        for rule in RULES:
            s = scores[rule]
            rows.append([prior, rule] + [float(np.mean([x[k] for x in s])) * (1e3 if k == "mse" else 1)
                                         for k in ("sad", "mse", "grad", "conn")]
                        + [sum(x["encoded"] for x in s), sum(x["encode"] for x in s)])
    return rows


def six_k(reps: int) -> list[list]:
    from nuke_hdmatt.metrics import sad
    frame = hrc.frame_6k("GT24")
    rows = []
    for rep in range(reps):
        for rule in RULES:
            alpha, st = _timed(_engine(rule), frame)
            rows.append([rep + 1, rule, st["encoded"], st["total"], st.get("prior"), st.get("encode"),
                         st.get("cpc"), st.get("decode"), st.get("upsample"), st.get("detail"),
                         sad(alpha, frame.alpha, frame.trimap)])
            print(" ".join(str(x) for x in rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="GT24 at half size, no 6K frame")
    ap.add_argument("--reps", type=int, default=2, help="interleaved 6K runs of each rule")
    args = ap.parse_args(argv)
    if not hrc.data_available():
        print("border_patches: shared data not found; nothing to do", file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    names = ["GT24"] if args.quick else hrc.validation_names()
    q = quality(names, 2 if args.quick else 1)
    precision = _engine(RULES[1])._dtype_name()
    text = (f"## Border patches: which clean patches are context{' (quick)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\nFrames: {', '.join(names)} as `highres_strategies.py` "
            f"builds them{' (half size)' if args.quick else ''}; the shipped weights, {precision} "
            "(the default precision on this CPU). Means over the frames; encodes = patches through the "
            "encoder's 1/8 stages in pass 1, summed over the frames (both cascade passes).\n\n"
            + markdown_table(["prior", "clean patches encoded", "SAD", "MSE x1e-3", "Grad", "Conn",
                              "encodes", "encode s"], q))
    if not args.quick:
        rows = six_k(args.reps)
        text += ("\n\nThe 6K frame (`frame_6k(\"GT24\")`, 6000x4000, default settings), the rules "
                 "interleaved; seconds per stage:\n\n"
                 + markdown_table(["run", "clean patches encoded", "encodes", "total s", "prior s",
                                   "encode s", "cpc s", "decode s", "upsample s", "detail s",
                                   "SAD"], rows))
    publish("border_patches", args.quick, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
