"""High-resolution strategies on real ground truth (the paper's figures 1, 5, 6).

On high-resolution composites of the held-out validation images (see ``hr_composites``)
compare, at full resolution:

  (a) HDMatt patches with cross-patch context (the shipped engine; variant D with the
      global classical prior);
  (b) the same network on plain patches without context (``Engine.load(context=False)``);
  (c) downsample to 1024 px on the long side, run (a), upsample the alpha (bilinear, and
      guided by the full-resolution plate: the cascade's first stage alone);
  (d) PyMatting closed-form at full resolution, skipped when its predicted memory exceeds
      ``--max-cf-gib`` or 70 % of the memory available now;
  (e) closed-form at 1024 px, upsampled (the classical downsample strategy);
  for variant D weights also (a) with the cascade prior (the engine's default: the network's
  own alpha at 1024 px, guided upsampling, then a full-resolution pass moving each pixel the
  step the weights' detail model predicts from that prior to its answer; with the old fixed
  quarter step; and undamped, the whole way) and with the local
  (per-patch) prior instead of the global one, and (a) for every other
  ``nuke_hdmatt/model/hdmatt*.safetensors``.

Each method runs in its own process (peak RSS from ``ru_maxrss``). Writes
``results/highres_strategies[_quick].md``, ``..._sad.png`` (SAD and time per method) and
``..._crops.png`` (side-by-side hair crops), and a section of ``RESULTS.md``.

    .venv/bin/python -m benchmarks.highres_strategies --quick     # GT24 at half size
    .venv/bin/python -m benchmarks.highres_strategies --threads 2  # all 5, full size
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .methods import (
    add_weights_argument,
    chosen_weights,
    describe_weights,
    hdmatt_spec,
    pymatting_spec,
    run_isolated,
    weights_variant,
)
from .report import (
    MEMORY_NOTE,
    available_gib,
    machine_info,
    machine_line,
    markdown_table,
    publish,
    results_path,
    save_figure,
)

# Measured here: closed-form took 7.3 GiB on a 3280x2310 plate with 32 % unknown pixels
# (about 3.2 KiB per unknown pixel: the sparse Laplacian holds 81 entries per window).
CF_BYTES_PER_UNKNOWN = 7.3 * 2**30 / (3280 * 2310 * 0.32)


def predicted_cf_gib(trimap: np.ndarray) -> float:
    return float((trimap == 0.5).sum() * CF_BYTES_PER_UNKNOWN / 2**30 + trimap.size * 48 / 2**30)


def strategy_specs(weights: list[Path]) -> list[dict]:
    main = weights[0] if weights else None
    variant = weights_variant(main) if main else "D"
    specs = [
        hdmatt_spec(main, prior="global", label="(a) patches + CPC"),
        hdmatt_spec(main, prior="global", context=False, label="(b) patches, no context"),
        hdmatt_spec(main, downsample=1024, label="(c) downsample 1024"),
        hdmatt_spec(main, downsample=1024, upsample="guided", label="(c) downsample 1024, guided upsampling"),
        pymatting_spec("cf", label="(d) closed-form full res"),
        pymatting_spec("cf", downsample=1024, label="(e) closed-form 1024"),
    ]
    if variant == "D":
        specs.insert(1, hdmatt_spec(main, prior="local", label="(a) patches + CPC, local prior"))
        specs.insert(1, hdmatt_spec(main, prior="cascade", detail=1.0,
                                    label="(a) patches + CPC, cascade prior, undamped"))
        specs.insert(1, hdmatt_spec(main, prior="cascade", detail=0.25,
                                    label="(a) patches + CPC, cascade prior, fixed step 0.25"))
        specs.insert(1, hdmatt_spec(main, prior="cascade",
                                    label="(a) patches + CPC, cascade prior (default)"))
    for extra in weights[1:]:
        specs.append(hdmatt_spec(extra, label=f"(a) HDMatt-{weights_variant(extra)} "
                                              f"({extra.stem}) patches + CPC"))
    return specs


def measure(spec: dict, frame, threads: int, max_cf_gib: float) -> tuple[dict, np.ndarray | None]:
    """Run ``spec`` on ``frame`` in its own process: (table row, alpha or None if skipped or
    failed, with the reason in row["note"])."""
    from nuke_hdmatt.metrics import all_metrics
    row = {"image": frame.name, "size": frame.size, "unknown": frame.unknown_fraction,
           "method": spec["label"]}
    need = predicted_cf_gib(frame.trimap) if spec["kind"] == "cf" and not spec["downsample"] else 0
    limit = min(max_cf_gib, 0.7 * (available_gib() or max_cf_gib))
    if need > limit:
        row["note"] = f"skipped: predicted {need:.1f} GiB > {limit:.1f} GiB"
        print(f"  {spec['label']}: {row['note']}", flush=True)
        return row, None
    alpha, stats = run_isolated(spec, frame.image, frame.trimap, threads)
    if alpha is None:
        row["note"] = stats["error"]
        print(f"  {spec['label']}: FAILED {stats['error']}", flush=True)
        return row, None
    row.update(all_metrics(alpha, frame.alpha, frame.trimap))
    row.update(wall_s=stats["wall_s"], peak_mib=stats["peak_rss_mib"],
               work_mib=stats["peak_rss_mib"] - stats["base_rss_mib"],
               patches=stats["stages"].get("patches_run"), stages=stats["stages"])
    if need:
        row["note"] = f"predicted {need:.1f} GiB"
    print(f"  {spec['label']}: SAD {row['sad']:.2f}  {row['wall_s']:.1f} s  "
          f"peak {row['peak_mib']:.0f} MiB", flush=True)
    return row, alpha


def run(args) -> dict:
    weights = chosen_weights(args)
    specs = strategy_specs(weights)
    model_note = (f"weights: {', '.join(describe_weights(p) for p in weights)}" if weights else
                  "NO TRAINED WEIGHTS: HDMatt rows use an untrained random light variant-D "
                  "network (timings valid, quality meaningless)")
    rows, crops = [], []
    for i, name in enumerate(args.names):
        frame = hrc.hr_composite(name, index=i, scale=args.scale)
        print(f"{name}: {frame.size}, {frame.unknown_fraction:.1%} unknown, bg {frame.background}",
              flush=True)
        box = hrc.hair_box(frame.alpha, max(64, args.crop // args.scale))
        crop = {"name": name, "box": box, "image": frame.image, "gt": frame.alpha,
                "alphas": {}, "sad": {}}
        for spec in specs:
            row, alpha = measure(spec, frame, args.threads, args.max_cf_gib)
            rows.append(row)
            crop["alphas"][spec["label"]] = alpha
            if alpha is not None:
                crop["sad"][spec["label"]] = row["sad"]
        crops.append(crop)
    return {"rows": rows, "crops": crops, "specs": specs, "model_note": model_note}


def summarise(args, result, info) -> str:
    rows, specs = result["rows"], result["specs"]
    per_image = markdown_table(
        ["image", "size", "unknown", "method", "SAD", "MSE x1e-3", "Grad", "Conn", "time s",
         "peak RSS MiB", "method working set MiB", "patches", "note"],
        [[r["image"], r["size"], f"{r['unknown']:.1%}", r["method"], r.get("sad"),
          None if "mse" not in r else r["mse"] * 1e3, r.get("grad"), r.get("conn"),
          r.get("wall_s"), r.get("peak_mib"), r.get("work_mib"), r.get("patches"),
          r.get("note", "")] for r in rows])
    means = []
    for spec in specs:
        done = [r for r in rows if r["method"] == spec["label"] and "sad" in r]
        if not done:
            means.append([spec["label"], 0] + [None] * 6)
            continue
        m = {k: float(np.mean([r[k] for r in done])) for k in
             ("sad", "mse", "grad", "conn", "wall_s", "peak_mib")}
        means.append([spec["label"], len(done), m["sad"], m["mse"] * 1e3, m["grad"], m["conn"],
                      m["wall_s"], m["peak_mib"]])
    mean_table = markdown_table(["method", "images", "SAD", "MSE x1e-3", "Grad", "Conn",
                                 "time s", "peak RSS MiB"], means)
    scale_note = ("full alpha_highres resolution" if args.scale == 1 else
                  f"alpha_highres block-averaged by {args.scale} (quick)")
    return (f"## High-resolution strategies{' (quick)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\n"
            f"Frames: {', '.join(args.names)} (held-out validation images), {scale_note}; "
            f"ground-truth alpha over a native-pixel crop of a 6K background, composited in "
            f"linear light; foreground colour = PyMatting `estimate_foreground_ml` on the "
            f"800 px dev image (linear light), upsampled bilinearly. Trimap: known where the "
            f"ground truth is 0 or 1, unknown band widened by {hrc.BAND // args.scale} px each "
            f"side. {result['model_note']}. {MEMORY_NOTE}.\n\n"
            f"Mean over images:\n\n{mean_table}\nPer image:\n\n{per_image}\n"
            f"Plots: `results/{results_path('highres_strategies', args.quick, '_sad.png').name}`, "
            f"hair crops: `results/{results_path('highres_strategies', args.quick, '_crops.png').name}`.\n")


def plot(args, result) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    rows, specs = result["rows"], result["specs"]
    labels = [s["label"] for s in specs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(args.names))
    for i, name in enumerate(args.names):
        vals = [next((r.get("sad", np.nan) for r in rows if r["image"] == name and r["method"] == lab),
                     np.nan) for lab in labels]
        ax1.bar(np.arange(len(labels)) + i * width, vals, width, label=name)
    ax1.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    ax1.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
    ax1.set_ylabel("SAD (lower is better)")
    ax1.legend(fontsize=7)
    for lab in labels:
        pts = [(r["wall_s"], r["sad"]) for r in rows if r["method"] == lab and "sad" in r]
        if pts:
            ax2.scatter(*zip(*pts), label=lab)
    ax2.set_xlabel("wall time per frame, s")
    ax2.set_ylabel("SAD")
    ax2.set_xscale("log")
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # crowded minor labels
    ax2.legend(fontsize=6)
    fig.suptitle("High-resolution strategies" + (" (quick)" if args.quick else ""))
    save_figure(fig, results_path("highres_strategies", args.quick, "_sad.png"))
    plt.close(fig)
    hrc.save_crops(results_path("highres_strategies", args.quick, "_crops.png"), result["crops"],
                   "Hair crops at full frame resolution (white = foreground)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one image (GT24, hair) at half size")
    ap.add_argument("--names", nargs="*", help="alphamatting-dev names (default: validation images)")
    ap.add_argument("--scale", type=int, help="block-average factor (default 1, quick 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch/numba threads per method")
    add_weights_argument(ap)
    ap.add_argument("--max-cf-gib", type=float, default=16.0,
                    help="skip full-resolution closed-form above this predicted memory")
    ap.add_argument("--crop", type=int, default=320, help="hair crop side at full resolution")
    args = ap.parse_args(argv)
    if not hrc.data_available():
        print("highres_strategies: shared data not found (alphamatting-dev/alpha_highres, "
              "6K backgrounds); nothing to do", file=sys.stderr)
        return 2
    args.names = args.names or (["GT24"] if args.quick else hrc.validation_names())
    args.scale = args.scale or (2 if args.quick else 1)
    info = machine_info(args.threads)
    t0 = time.time()
    result = run(args)
    text = summarise(args, result, info) + f"\nTotal run time {time.time() - t0:.0f} s.\n"
    plot(args, result)
    publish("highres_strategies", args.quick, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
