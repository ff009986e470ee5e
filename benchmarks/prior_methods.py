"""Variant D's classical prior: global (downsampled solve) against local (per patch) (issue 9).

On the high-resolution composites of the held-out validation images (``hr_composites``):

- each prior alone (``nuke_hdmatt.engine.prior.compute_prior``): time per frame, peak RSS,
  and SAD/MSE/Grad/Conn against the ground truth;
- the variant-D engine with each prior: the same figures for its alpha;

then the recommended default (the lower mean SAD of the engine's alpha; when the two are
within 2 %, the faster one). The full mode also times one 6K frame (6000x4000: a ground
truth upsampled to fill a 6K background, see ``hr_composites.frame_6k``) with the D engine
on CPU, split between the prior and the network.

    .venv/bin/python -m benchmarks.prior_methods --quick       # GT24 at half size, no 6K
    .venv/bin/python -m benchmarks.prior_methods --threads 2   # 5 images + the 6K frame
    .venv/bin/python -m benchmarks.prior_methods --six-k-only  # just the 6K timing

Without trained variant-D weights the engine rows use an untrained light D network, which
is initialised to return its prior unchanged: they then time the pipeline only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .highres_strategies import measure
from .methods import (
    add_weights_argument,
    chosen_weights,
    describe_weights,
    hdmatt_spec,
    weights_prior_solver,
    weights_variant,
)
from .report import machine_info, machine_line, markdown_table, publish, results_path, save_figure

PRIORS = ("global", "local")
NETWORK_STAGES = ("encode", "cpc", "tgnl", "decode")


def d_weights(args) -> Path | None:
    """The first variant-D weights file (``--weights`` or nuke_hdmatt/model/), if any."""
    return next((w for w in chosen_weights(args) if weights_variant(w) == "D"), None)


def specs(weights: Path | None) -> list[dict]:
    out = []
    solver = weights_prior_solver(weights) if weights else "cf"
    for method in PRIORS:
        out.append({"kind": "prior", "prior": method, "max_side": 1024, "patch": 320,
                    "overlap": 32, "downsample": None, "solver": solver,
                    "label": f"{method} prior alone"})
        out.append(hdmatt_spec(weights, prior=method, label=f"D engine, {method} prior"))
    return out


def recommend(rows) -> str:
    engine = {}
    for method in PRIORS:
        done = [r for r in rows if r["method"] == f"D engine, {method} prior" and "sad" in r]
        if done:
            engine[method] = (float(np.mean([r["sad"] for r in done])),
                              float(np.mean([r["wall_s"] for r in done])))
    if len(engine) < 2:
        missing = [m for m in PRIORS if m not in engine]
        return (f"No recommendation from this run: the {', '.join(missing)} prior did not "
                f"complete (see the notes above); the engine keeps `global`.")
    (gs, gt), (ls, lt) = engine["global"], engine["local"]
    if abs(gs - ls) <= 0.02 * min(gs, ls):
        pick = "global" if gt <= lt else "local"
        why = "mean SAD within 2 %, so the faster one"
    else:
        pick = "global" if gs < ls else "local"
        why = "lower mean SAD"
    return (f"Recommended default: **{pick}** ({why}): engine mean SAD global {gs:.2f} vs local "
            f"{ls:.2f}; mean time per frame global {gt:.1f} s vs local {lt:.1f} s.")


def six_k(args, weights) -> list[list]:
    frame = hrc.frame_6k("GT24")
    print(f"6K frame: {frame.size}, {frame.unknown_fraction:.1%} unknown", flush=True)
    out = []
    for method in args.six_k_priors:
        spec = hdmatt_spec(weights, prior=method, label=f"D engine, {method} prior, 6K")
        row, _ = measure(spec, frame, args.threads, 0)
        st = row.get("stages", {})
        network = sum(st.get(k, 0.0) for k in NETWORK_STAGES)
        known = network + st.get("prior", 0.0) + st.get("upsample", 0.0)
        out.append([frame.size, f"{frame.unknown_fraction:.1%}", method, row.get("wall_s"),
                    st.get("prior"), network, st.get("upsample"),
                    None if "wall_s" not in row else row["wall_s"] - known,
                    st.get("patches_run"), row.get("peak_mib"), row.get("sad"), row.get("note", "")])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="GT24 at half size, no 6K frame")
    ap.add_argument("--names", nargs="*")
    ap.add_argument("--scale", type=int)
    ap.add_argument("--threads", type=int, default=1)
    add_weights_argument(ap)
    ap.add_argument("--six-k", dest="six_k", action=argparse.BooleanOptionalAction, default=None,
                    help="time a 6K frame (default: on in full mode)")
    ap.add_argument("--six-k-only", action="store_true", help="only the 6K frame timing")
    ap.add_argument("--six-k-priors", nargs="*", default=["cascade", "global", "local"],
                    choices=PRIORS + ("cascade",))
    args = ap.parse_args(argv)
    if not hrc.data_available():
        print("prior_methods: shared data not found; nothing to do", file=sys.stderr)
        return 2
    args.names = args.names or (["GT24"] if args.quick else hrc.validation_names())
    args.scale = args.scale or (2 if args.quick else 1)
    args.six_k = args.six_k_only or ((not args.quick) if args.six_k is None else args.six_k)
    weights = d_weights(args)
    note = (f"weights {describe_weights(weights)}" if weights else
            "NO TRAINED VARIANT-D WEIGHTS: engine rows use an untrained light D network, which "
            "returns its prior unchanged (times valid, engine quality = prior quality)")
    info = machine_info(args.threads)
    if not args.six_k_only:
        compare(args, weights, note, info)
    if args.six_k:
        t0 = time.time()
        six = six_k(args, weights)
        text = ("## Variant D on one 6K frame (CPU)\n\n"
                f"{machine_line(info)}.\n\n{note}. Frame: `frame_6k` (GT24's ground truth "
                "upsampled to fill a 6000x4000 background, so its SAD says little about quality; "
                "this is a timing). Prior = the classical solve at 1024 px; network = encode + "
                "CPC + TGNL + decode (for the cascade: its 1024 px pass and its full-resolution "
                "pass); guided = the cascade's guided upsampling; other = patch extraction, "
                "stitching, bookkeeping.\n\n"
                + markdown_table(["frame", "unknown", "prior", "total s", "prior s", "network s",
                                  "guided s", "other s", "patches", "peak RSS MiB", "SAD", "note"], six)
                + f"\nTotal run time {time.time() - t0:.0f} s.\n")
        publish("prior_methods_6k", False, text)
    return 0


def compare(args, weights, note, info) -> None:
    """Global against local prior on the high-resolution composites: tables, plot, section."""
    t0 = time.time()
    rows = []
    for i, name in enumerate(args.names):
        frame = hrc.hr_composite(name, index=i, scale=args.scale)
        print(f"{name}: {frame.size}, {frame.unknown_fraction:.1%} unknown", flush=True)
        for spec in specs(weights):
            row, _ = measure(spec, frame, args.threads, 0)
            rows.append(row)
    table = markdown_table(
        ["image", "size", "unknown", "method", "SAD", "MSE x1e-3", "Grad", "Conn", "time s",
         "prior s", "peak RSS MiB", "note"],
        [[r["image"], r["size"], f"{r['unknown']:.1%}", r["method"], r.get("sad"),
          None if "mse" not in r else r["mse"] * 1e3, r.get("grad"), r.get("conn"),
          r.get("wall_s"), r.get("stages", {}).get("prior"), r.get("peak_mib"), r.get("note", "")]
         for r in rows])
    means = []
    for spec in specs(weights):
        done = [r for r in rows if r["method"] == spec["label"] and "sad" in r]
        means.append([spec["label"], len(done)]
                     + ([float(np.mean([r[k] for r in done])) for k in ("sad", "conn", "wall_s")]
                        if done else [None] * 3))
    mean_table = markdown_table(["method", "images", "mean SAD", "mean Conn", "mean time s"], means)
    scale_note = ("full alpha_highres resolution" if args.scale == 1
                  else f"block-averaged by {args.scale} (quick)")
    text = (f"## Prior methods for variant D{' (quick)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\n{note}. Frames: {', '.join(args.names)}, {scale_note} "
            f"(composites as in the high-resolution strategies section). Global = the weights' "
            f"classical solve ({weights_prior_solver(weights) if weights else 'cf'}) on "
            f"the frame downsampled to 1024 px long side, upsampled; local = the same solve per "
            f"320 px patch (32 px overlap) blended like the network's patches.\n\n"
            f"{mean_table}\n{recommend(rows)}\n\nPer image:\n\n{table}"
            f"\nTotal run time {time.time() - t0:.0f} s.\n")
    plot(args, rows)
    publish("prior_methods", args.quick, text)


def plot(args, rows) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in zip(sorted({r["method"] for r in rows}), "osd^v<>"):
        pts = [(r["wall_s"], r["sad"]) for r in rows if r["method"] == method and "sad" in r]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=method)
    ax.set_xlabel("time per frame, s")
    ax.set_ylabel("SAD vs ground truth")
    ax.legend(fontsize=7)
    ax.set_title("Variant D prior: global vs local" + (" (quick)" if args.quick else ""))
    save_figure(fig, results_path("prior_methods", args.quick, ".png"))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
