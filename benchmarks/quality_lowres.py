"""Quality on the real low-resolution alphamatting.com dev images (issue 7.1).

Every ``nuke_hdmatt/model/hdmatt*.safetensors`` against PyMatting closed-form, KNN and LKM on
``shared/data/alphamatting-dev`` (800 px images) with trimap1 and trimap2: SAD, MSE, Grad
and Conn per image and as means, and time per image. Rows are marked ``val`` (held out
from training: ``nuke_hdmatt.training.VALIDATION_IMAGES``) or ``train`` (the model has seen
these foregrounds, composited over other backgrounds, during training: not a fair test).
Time per image is wall time of one call after a warm-up call (numba compilation and torch's
first-call setup excluded); for variant D it includes the engine's own classical prior.

    .venv/bin/python -m benchmarks.quality_lowres --quick   # 5 validation images, no LKM
    .venv/bin/python -m benchmarks.quality_lowres           # all 18 (LKM on validation only)

Writes ``results/quality_lowres[_quick].md`` and ``..._sad.png`` and a RESULTS.md section,
with the issue-9 target check (mean SAD and Conn at most 0.85 x closed-form's, MSE and Grad
no worse) for each model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from nuke_hdmatt.atomic import write_text_atomic
from nuke_hdmatt.devset import load_case

from .methods import (
    add_weights_argument,
    chosen_weights,
    describe_weights,
    hdmatt_spec,
    pymatting_spec,
    run_method,
    warm_up,
    weights_prior_solver,
)
from .report import (
    machine_info,
    machine_line,
    markdown_table,
    results_path,
    save_figure,
    update_results_section,
)

TRIMAP_SETS = ("trimap1", "trimap2")
METRICS = ("sad", "mse", "grad", "conn")


def method_specs(weights: list[Path], lkm: str) -> tuple[list[dict], str]:
    specs = [hdmatt_spec(w) for w in weights] or [hdmatt_spec(None)]
    note = (f"models: {', '.join(describe_weights(p) for p in weights)}" if weights else
            "NO TRAINED WEIGHTS in nuke_hdmatt/model/: the HDMatt row is an untrained random light "
            "variant-D network (its quality is meaningless; it only exercises the pipeline)")
    specs += [pymatting_spec("cf"), pymatting_spec("knn")]
    # a model whose prior averages several solvers: that average alone is a peer too, so the
    # table shows what the network adds to its own starting point
    for solver in sorted({weights_prior_solver(w) for w in weights} - {"cf"}):
        specs.append({"kind": "prior", "prior": "global", "solver": solver, "downsample": None,
                      "label": f"PyMatting mean ({solver})"})
    if lkm != "none":
        specs.append(pymatting_spec("lkm", only_val=lkm == "val"))
    return specs, note


def run(args, specs) -> list[dict]:
    from nuke_hdmatt.metrics import all_metrics
    from nuke_hdmatt.training import VALIDATION_IMAGES
    for spec in specs:
        warm_up(spec)
    rows = []
    for name in args.names:
        split = "val" if name in VALIDATION_IMAGES else "train"
        for ts in TRIMAP_SETS:
            image, tri, gt = load_case(args.dev, name, ts)
            for spec in specs:
                if spec.get("only_val") and split != "val":
                    continue
                t0 = time.perf_counter()
                alpha = run_method(spec, image, tri)
                dt = time.perf_counter() - t0
                row = {"image": name, "split": split, "trimap": ts, "method": spec["label"],
                       "time_s": dt, **all_metrics(alpha, gt, tri)}
                rows.append(row)
                print(f"{name} {ts} {spec['label']}: SAD {row['sad']:.2f} ({dt:.1f} s)", flush=True)
    return rows


def means(rows, method, trimap, split=None) -> dict | None:
    sel = [r for r in rows if r["method"] == method and r["trimap"] == trimap
           and (split is None or r["split"] == split)]
    if not sel:
        return None
    out = {k: float(np.mean([r[k] for r in sel])) for k in METRICS + ("time_s",)}
    out["n"] = len(sel)
    return out


def target_check(rows, specs) -> str:
    """Issue 9's target, per model and trimap set, on the validation images."""
    lines = []
    for spec in specs:
        if spec["kind"] != "hdmatt":
            continue
        for ts in TRIMAP_SETS:
            m, cf = means(rows, spec["label"], ts, "val"), means(rows, "closed-form", ts, "val")
            if not m or not cf:
                continue
            checks = [("SAD", m["sad"] <= 0.85 * cf["sad"], m["sad"] / cf["sad"]),
                      ("Conn", m["conn"] <= 0.85 * cf["conn"], m["conn"] / cf["conn"]),
                      ("MSE", m["mse"] <= cf["mse"], m["mse"] / cf["mse"]),
                      ("Grad", m["grad"] <= cf["grad"], m["grad"] / cf["grad"])]
            verdict = "MET" if all(ok for _, ok, _ in checks) else "not met"
            detail = ", ".join(f"{k} {r:.2f}x CF{'' if ok else ' (miss)'}" for k, ok, r in checks)
            lines.append(f"- {spec['label']}, {ts}: target {verdict}: {detail}")
    return "\n".join(lines) + "\n" if lines else ""


def summarise(args, rows, specs, note, info) -> tuple[str, str]:
    mean_rows = []
    splits = ("val", "train", None) if not args.quick else ("val",)
    for split in splits:
        for ts in TRIMAP_SETS:
            for spec in specs:
                m = means(rows, spec["label"], ts, split)
                if m:
                    mean_rows.append([split or "all", ts, spec["label"], m["n"], m["sad"],
                                      m["mse"] * 1e3, m["grad"], m["conn"], m["time_s"]])
    mean_table = markdown_table(["images", "trimap", "method", "n", "SAD", "MSE x1e-3", "Grad",
                                 "Conn", "time s/image"], mean_rows)
    per_image = markdown_table(
        ["image", "split", "trimap", "method", "SAD", "MSE x1e-3", "Grad", "Conn", "time s"],
        [[r["image"], r["split"], r["trimap"], r["method"], r["sad"], r["mse"] * 1e3, r["grad"],
          r["conn"], r["time_s"]] for r in rows])
    head = (f"## Quality on alphamatting-dev (800 px)"
            f"{' (quick: validation images only)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\n{note}. `val` = held-out validation images "
            f"(GT02, GT10, GT18, GT24, GT27); `train` images' foregrounds were used in training. "
            f"Time per image after a warm-up call; HDMatt-D's time includes its classical prior. "
            f"LKM (PyMatting, 40-130 s an image here): "
            f"{ {'all': 'all images', 'val': 'validation images only', 'none': 'not run'}[args.lkm]}.\n\n")
    checks = target_check(rows, specs)
    summary = (head + "Means:\n\n" + mean_table
               + (f"\nIssue 9 target on validation:\n\n{checks}" if checks else ""))
    full = summary + "\nPer image:\n\n" + per_image
    return summary, full


def plot(args, rows, specs) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [s["label"] for s in specs]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.8 / len(labels)
    for ax, ts in zip(axes, TRIMAP_SETS):
        for j, lab in enumerate(labels):
            vals = [next((r["sad"] for r in rows if r["image"] == n and r["trimap"] == ts
                          and r["method"] == lab), np.nan) for n in args.names]
            ax.bar(np.arange(len(args.names)) + j * width, vals, width, label=lab)
        ax.set_xticks(np.arange(len(args.names)) + 0.4 - width / 2)
        ax.set_xticklabels(args.names, rotation=60, fontsize=7)
        ax.set_title(ts)
        ax.set_ylabel("SAD (lower is better)")
    axes[0].legend(fontsize=7)
    fig.suptitle("alphamatting-dev SAD per image" + (" (quick)" if args.quick else ""))
    save_figure(fig, results_path("quality_lowres", args.quick, "_sad.png"))
    plt.close(fig)


def find_dev_images(args, script: str) -> bool:
    """Set ``args.dev`` and default ``args.names`` (validation images with --quick, else all);
    False (after a one-line message) when the shared data is missing. Also sets torch's
    thread count from ``args.threads``."""
    import torch
    torch.set_num_threads(args.threads)
    from nuke_hdmatt.training import VALIDATION_IMAGES, shared_data_dir
    from nuke_hdmatt.training.sources import training_names
    args.dev = shared_data_dir() / "alphamatting-dev"
    if not (args.dev / "image").is_dir():
        print(f"{script}: {args.dev} not found; nothing to do", file=sys.stderr)
        return False
    if not args.names:
        args.names = list(VALIDATION_IMAGES) if args.quick else sorted(
            training_names(args.dev, holdout=()))
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="validation images only")
    ap.add_argument("--names", nargs="*", help="image names (default: all, or validation with --quick)")
    ap.add_argument("--threads", type=int, default=1)
    add_weights_argument(ap)
    ap.add_argument("--lkm", choices=("all", "val", "none"),
                    help="images LKM runs on (about 40-130 s an image here; default: val, "
                         "none with --quick)")
    args = ap.parse_args(argv)
    args.lkm = args.lkm or ("none" if args.quick else "val")
    if not find_dev_images(args, "quality_lowres"):
        return 2
    specs, note = method_specs(chosen_weights(args), args.lkm)
    info = machine_info(args.threads)
    t0 = time.time()
    rows = run(args, specs)
    summary, full = summarise(args, rows, specs, note, info)
    tail = (f"\nTotal run time {time.time() - t0:.0f} s. Plot: "
            f"`results/{results_path('quality_lowres', args.quick, '_sad.png').name}`.\n")
    write_text_atomic(results_path("quality_lowres", args.quick, ".md"), full + tail)
    plot(args, rows, specs)
    update_results_section("quality_lowres" + ("_quick" if args.quick else ""),
                           summary + "\nPer-image table: "
                           f"`results/{results_path('quality_lowres', args.quick, '.md').name}`." + tail)
    print(summary + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
