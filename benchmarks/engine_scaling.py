"""Engine speed and memory against resolution and unknown fraction (issues 2 and 7.3).

Synthetic plates at 1K, 2K, 4K, 6K (and 8K in full mode), 1.9:1 (2048x1080 is "2K"),
with 5 / 15 / 30 % unknown pixels: a 6K background photo block-averaged and resampled, a smooth
wobbly foreground blob composited over it, and a trimap whose unknown band around the
blob's edge holds exactly the asked fraction of the frame. On each plate, each in its own
process (peak RSS from ``ru_maxrss``):

- our engine as shipped (default weights, 320 px patches, 32 px overlap): wall time,
  patches run, peak RSS, and the split between prior (variant D), encode, CPC (embedding
  + context selection), TGNL, decode and the rest (patch extraction, stitching);
- whole-image inference of the same network (one patch the size of the frame, padded to a
  multiple of 8), skipped when the memory predicted from the smaller sizes (quadratic in the
  pixel count: the non-local attention is all-pairs) exceeds the limit;
- PyMatting closed-form at full resolution, skipped likewise;

and, once per size, the imaging layer's cost for a frame of that size: reading a half RGBA
EXR (OpenImageIO), the OCIO conversion ACEScg -> sRGB-encoded Rec.709, and writing the
alpha EXR. Ratios (engine / whole image, engine / closed-form) come from the same run.

    .venv/bin/python -m benchmarks.engine_scaling --quick      # 1K and 2K
    .venv/bin/python -m benchmarks.engine_scaling --threads 2  # 1K-8K
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .highres_strategies import predicted_cf_gib
from .methods import (
    add_weights_argument,
    chosen_weights,
    describe_weights,
    hdmatt_spec,
    pymatting_spec,
    run_isolated,
)
from .report import (
    MEMORY_NOTE,
    REPO,
    available_gib,
    machine_info,
    machine_line,
    markdown_table,
    publish,
    results_path,
    save_figure,
)

SIZES = {"1K": (1024, 540), "2K": (2048, 1080), "4K": (4096, 2160), "6K": (6144, 3240),
         "8K": (8192, 4320)}
FRACTIONS = (0.05, 0.15, 0.30)
STAGES = ("prior", "encode", "cpc", "tgnl", "decode", "other")


def synthetic_plate(width: int, height: int, fraction: float, bg: np.ndarray):
    """(image float32 HxWx3 sRGB 0-1, trimap float32 HxW, alpha float32 HxW) from a
    background photo ``bg`` (float32 HxWx3 sRGB 0-1)."""
    from nuke_hdmatt.training.compositing import composite
    from nuke_hdmatt.training.resampling import reduce_blocks, resize
    sh, sw = bg.shape[:2]
    # Crop the photo to the plate's aspect, then resample to the plate size.
    cw, ch = ((sw, round(sw * height / width)) if sw * height / width <= sh
              else (round(sh * width / height), sh))
    x0, y0 = (sw - cw) // 2, (sh - ch) // 2
    crop = bg[y0:y0 + ch, x0:x0 + cw]
    factor = cw // width
    bg = resize(reduce_blocks(crop, factor) if factor >= 2 else crop, height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx, r0 = height / 2, width / 2, 0.35 * min(height, width)
    rho = np.hypot(yy - cy, xx - cx)
    theta = np.arctan2(yy - cy, xx - cx)
    edge = r0 * (1 + 0.18 * np.sin(5 * theta) + 0.06 * np.sin(17 * theta + 1.0))
    dist = rho - edge                       # < 0 inside the blob, in px (roughly)
    soft = max(2.0, 0.004 * height)
    alpha = np.clip(0.5 - dist / soft, 0, 1).astype(np.float32)
    fg = np.stack([0.6 + 0.3 * np.sin(xx / 37.0), 0.45 + 0.2 * np.cos(yy / 53.0),
                   np.full_like(xx, 0.3)], axis=-1)
    image = composite(fg, bg, alpha)
    # The band |dist| <= q with q the fraction-quantile of |dist| holds exactly that fraction.
    q = float(np.quantile(np.abs(dist), fraction))
    trimap = np.where(dist < 0, 1.0, 0.0).astype(np.float32)
    trimap[np.abs(dist) <= q] = 0.5
    return image, trimap, alpha


def imaging_costs(image: np.ndarray, alpha: np.ndarray, folder: Path) -> dict:
    """Seconds to read a half RGBA EXR of this size, convert it to the network space through
    OCIO, and write the alpha EXR (the imaging layer's part of a frame)."""
    import OpenImageIO as oiio

    from nuke_hdmatt.imaging import read_plate, resolve_config, to_network_space, write_alpha
    h, w = alpha.shape
    path = folder / f"plate_{w}x{h}.exr"
    spec = oiio.ImageSpec(w, h, 4, oiio.HALF)
    spec.channelnames = ("R", "G", "B", "A")
    spec.attribute("compression", "zip")
    spec.attribute("oiio:ColorSpace", "ACEScg")
    out = oiio.ImageOutput.create(str(path))
    rgba = np.concatenate([image ** 2.2, np.ones((h, w, 1), np.float32)], axis=-1)
    out.open(str(path), spec)
    out.write_image(rgba.astype(np.float16))
    out.close()
    config, _ = resolve_config(None)
    t0 = time.perf_counter()
    plate = read_plate(str(path), ("R", "G", "B"))
    t1 = time.perf_counter()
    to_network_space(plate.pixels, "ACEScg", config)
    t2 = time.perf_counter()
    write_alpha(str(folder / f"alpha_{w}x{h}.exr"), alpha, plate)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "colour_s": t2 - t1, "write_s": t3 - t2}


# Whole-image working set measured here with the light configuration: 18.4 GiB at 2048x1080.
WHOLE_MEASURED = (2048 * 1080, 18.4 * 1024)


def _predict(measured: list[tuple[int, float]], pixels: int) -> float:
    """Working set (MiB) at ``pixels`` from the largest measured run (else the figure above),
    scaled with the square of the pixel count: whole-image non-local attention (TGNL)
    compares every feature position with every other, so memory grows quadratically."""
    px, mib = max(measured) if measured else WHOLE_MEASURED
    return mib * (pixels / px) ** 2


def run(args) -> dict:
    weights = chosen_weights(args)
    main = weights[0] if weights else None
    engine = hdmatt_spec(main, label="engine")
    whole = {**hdmatt_spec(main, label="whole image"), "kind": "whole"}
    cf = pymatting_spec("cf")
    from nuke_hdmatt.training.sources import read_image

    from .hr_composites import backgrounds_6k
    bg_photo = read_image(backgrounds_6k()[0])[..., :3]
    rows, io_rows = [], []
    measured = {"whole": [], "cf": []}
    with tempfile.TemporaryDirectory(prefix="hdmatt-scaling-", dir=REPO / ".cache") as tmp:
        for size in args.sizes:
            w, h = SIZES[size]
            for fi, frac in enumerate(args.fractions):
                image, trimap, alpha = synthetic_plate(w, h, frac, bg_photo)
                if fi == 0:
                    io = imaging_costs(image, alpha, Path(tmp))
                    io_rows.append({"size": size, "w": w, "h": h, **io})
                    print(f"{size} imaging: {io}", flush=True)
                row = {"size": size, "w": w, "h": h, "mp": w * h / 1e6, "unknown": frac}
                _, st = run_isolated(engine, image, trimap, args.threads)
                row["engine"] = st
                for key, spec in (("whole", whole), ("cf", cf)):
                    cap = args.max_gib if key == "cf" else args.max_whole_gib
                    limit_mib = 1024 * min(cap, 0.7 * (available_gib() or cap))
                    if key == "cf":
                        need = predicted_cf_gib(trimap) * 1024
                    else:
                        need = _predict(measured["whole"], w * h)
                    if need > limit_mib:
                        row[key] = {"error": f"skipped: predicted {need / 1024:.1f} GiB"}
                        continue
                    _, s2 = run_isolated(spec, image, trimap, args.threads)
                    row[key] = s2
                    if key == "whole" and "peak_rss_mib" in s2:
                        measured["whole"].append((w * h, s2["peak_rss_mib"] - s2["base_rss_mib"]))
                rows.append(row)
                e = row["engine"]
                print(f"{size} {frac:.0%}: engine {e.get('wall_s', float('nan')):.1f} s "
                      f"({e.get('stages', {}).get('patches_run')} patches), whole "
                      f"{row['whole'].get('wall_s', row['whole'].get('error'))}, cf "
                      f"{row['cf'].get('wall_s', row['cf'].get('error'))}", flush=True)
    return {"rows": rows, "io": io_rows, "weights": main}


def _wall(st):
    return st.get("wall_s") if st else None


def _peak(st):
    return st.get("peak_rss_mib") if st else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarise(args, result, info) -> str:
    rows, io_rows = result["rows"], result["io"]
    main = result["weights"]
    note = (f"weights {describe_weights(main)}" if main else
            "NO TRAINED WEIGHTS: untrained random light variant-D network (same cost as "
            "trained weights of the light configuration)")
    t1 = []
    for r in rows:
        e, wh, cf = r["engine"], r["whole"], r["cf"]
        t1.append([r["size"], f"{r['w']}x{r['h']}", f"{r['unknown']:.0%}",
                   e.get("stages", {}).get("patches_run"), _wall(e), _peak(e),
                   _wall(wh) or wh.get("error"), _peak(wh),
                   _wall(cf) or cf.get("error"), _peak(cf),
                   _ratio(_wall(e), _wall(wh)), _ratio(_wall(e), _wall(cf)),
                   _ratio(_peak(e), _peak(cf))])
    table = markdown_table(
        ["size", "pixels", "unknown", "patches run", "engine s", "engine peak MiB",
         "whole-image s", "whole peak MiB", "closed-form s", "CF peak MiB",
         "engine/whole time", "engine/CF time", "engine/CF peak"], t1)
    t2 = []
    for r in rows:
        e = r["engine"]
        st = dict(e.get("stages", {}))
        if "wall_s" not in e:
            continue
        st["other"] = e["wall_s"] - sum(st.get(k, 0.0) for k in STAGES[:-1])
        t2.append([r["size"], f"{r['unknown']:.0%}"] + [st.get(k, 0.0) for k in STAGES]
                  + [e["wall_s"], e["peak_rss_mib"] - e["base_rss_mib"]])
    split = markdown_table(["size", "unknown"] + [f"{k} s" for k in STAGES]
                           + ["total s", "working set MiB"], t2)
    io = markdown_table(["size", "pixels", "read EXR s", "OCIO ACEScg->sRGB s", "write alpha EXR s"],
                        [[r["size"], f"{r['w']}x{r['h']}", r["read_s"], r["colour_s"], r["write_s"]]
                         for r in io_rows])
    return (f"## Engine scaling{' (quick: 1K and 2K)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\n{note}; engine defaults (320 px patches, 32 px overlap, "
            f"K=3, pool 30). Synthetic 1.9:1 plates (6K photo background resized, smooth blob "
            f"foreground). {MEMORY_NOTE}. Whole image = the same network on the whole frame as one "
            f"patch (no context). Skipped = predicted memory over min({args.max_gib:.0f} GiB "
            f"(closed-form) or {args.max_whole_gib:.0f} GiB (whole image), 70 % of available); "
            f"whole-image memory grows with the square of the pixel count (all-pairs "
            f"attention).\n\n"
            f"{table}\nWhere the engine's time goes (CPU, stages timed around the network "
            f"calls; other = patch extraction, stitching, bookkeeping):\n\n{split}\n"
            f"Imaging layer per frame (add to the engine's time for a file-to-file frame):\n\n{io}\n"
            f"Plot: `results/{results_path('engine_scaling', args.quick, '.png').name}`.\n")


def plot(args, result) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for frac, marker in zip(args.fractions, "osd"):
        sel = [r for r in rows if r["unknown"] == frac]
        for key, colour, lab in (("engine", "C0", "engine"), ("whole", "C1", "whole image"),
                                 ("cf", "C2", "closed-form")):
            pts = [(r["mp"], r[key]["wall_s"], r[key]["peak_rss_mib"]) for r in sel if "wall_s" in r[key]]
            if pts:
                mp, t, m = zip(*pts)
                ax1.plot(mp, t, marker=marker, color=colour, label=f"{lab}, {frac:.0%} unknown")
                ax2.plot(mp, np.array(m) / 1024, marker=marker, color=colour,
                         label=f"{lab}, {frac:.0%} unknown")
    for ax, lab in ((ax1, "wall time per frame, s"), (ax2, "peak RSS, GiB")):
        ax.set_xlabel("megapixels")
        ax.set_ylabel(lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=6)
    fig.suptitle("Engine scaling (CPU)" + (" quick" if args.quick else ""))
    save_figure(fig, results_path("engine_scaling", args.quick, ".png"))
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1K and 2K only")
    ap.add_argument("--sizes", nargs="*", choices=list(SIZES))
    ap.add_argument("--fractions", nargs="*", type=float)
    ap.add_argument("--threads", type=int, default=1)
    add_weights_argument(ap)
    ap.add_argument("--max-gib", type=float, default=16.0,
                    help="skip closed-form runs predicted above this")
    ap.add_argument("--max-whole-gib", type=float, default=8.0,
                    help="skip whole-image runs predicted above this (2K needs about 18 GiB)")
    args = ap.parse_args(argv)
    from .hr_composites import backgrounds_6k
    if not backgrounds_6k():
        print("engine_scaling: no 6K background in shared/data/backgrounds", file=sys.stderr)
        return 2
    args.sizes = args.sizes or (["1K", "2K"] if args.quick else list(SIZES))
    args.fractions = args.fractions or list(FRACTIONS)
    info = machine_info(args.threads)
    t0 = time.time()
    result = run(args)
    text = summarise(args, result, info) + f"\nTotal run time {time.time() - t0:.0f} s.\n"
    plot(args, result)
    publish("engine_scaling", args.quick, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
