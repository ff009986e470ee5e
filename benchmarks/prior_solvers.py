"""Which classical alpha variant D starts from (issue 9): PyMatting solvers and their means.

Each PyMatting solver (closed-form ``cf``, ``knn``, shared matting ``sm``, learning-based
``lbdm``) on the alphamatting-dev images with trimap1 and trimap2, then the mean of every
combination of them, scored alone (SAD, MSE, Grad, Conn; solve time relative to
closed-form), and our model(s) run on a few of those priors.

The combination is chosen on the **training** images: a classical solver has no training,
so those images are a fair test of the priors alone, and the validation images stay held
out for the model's numbers. (The network rows on training images are not fair: it has
seen those foregrounds.)

    .venv/bin/python -m benchmarks.prior_solvers --quick   # validation images, cf/knn/sm
    .venv/bin/python -m benchmarks.prior_solvers           # all 18 images, all four solvers

Writes ``results/prior_solvers[_quick].md`` and ``..._sad.png`` and a RESULTS.md section.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

from nuke_hdmatt.atomic import write_text_atomic
from nuke_hdmatt.devset import load_case

from .methods import add_weights_argument, chosen_weights, describe_weights, weights_prior_solver
from .quality_lowres import TRIMAP_SETS, find_dev_images
from .report import (
    machine_info,
    machine_line,
    markdown_table,
    results_path,
    save_figure,
    update_results_section,
)

SOLVERS = ("cf", "knn", "sm", "lbdm")
METRICS = ("sad", "mse", "grad", "conn")


def combinations(solvers) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(solvers) + 1) for c in itertools.combinations(solvers, r)]


def solve_all(args, names) -> tuple[dict, dict]:
    """alphas[(name, trimap, solver)] and seconds per solver (summed over cases)."""
    from nuke_hdmatt.engine.prior import solve
    solve(*_tiny(), "+".join(args.solvers))          # numba compiles each solver once
    alphas, seconds = {}, dict.fromkeys(args.solvers, 0.0)
    for name in names:
        for ts in TRIMAP_SETS:
            image, tri, _ = load_case(args.dev, name, ts)
            for s in args.solvers:
                t0 = time.perf_counter()
                alphas[(name, ts, s)] = solve(image, tri, s)
                seconds[s] += time.perf_counter() - t0
            print(f"{name} {ts}: solved {', '.join(args.solvers)}", flush=True)
    return alphas, seconds


def _tiny():
    rng = np.random.default_rng(0)
    tri = np.zeros((48, 48), np.float32)
    tri[16:32], tri[32:] = 0.5, 1.0
    return rng.random((48, 48, 3), dtype=np.float32), tri


def score(args, names, alphas, seconds, weights) -> list[dict]:
    from nuke_hdmatt.metrics import all_metrics
    from nuke_hdmatt.training import VALIDATION_IMAGES
    rows = []
    engines = {}
    for w in weights:
        from nuke_hdmatt.engine import Engine
        engines[w] = Engine.load(weights=w, device="cpu")
    net_priors = sorted({"cf", "cf+knn+sm"} | {weights_prior_solver(w) for w in weights},
                        key=lambda c: (c.count("+"), c))
    net_priors = [c for c in net_priors if set(c.split("+")) <= set(args.solvers)]
    for name in names:
        split = "val" if name in VALIDATION_IMAGES else "train"
        for ts in TRIMAP_SETS:
            image, tri, gt = load_case(args.dev, name, ts)
            for combo in combinations(args.solvers):
                prior = np.mean([alphas[(name, ts, s)] for s in combo], axis=0)
                rows.append({"image": name, "split": split, "trimap": ts, "method": "+".join(combo),
                             "network": "", **all_metrics(prior, gt, tri)})
                label = "+".join(combo)
                for w, eng in engines.items():
                    if label in net_priors:
                        alpha = eng.matte(image, tri, prior=prior)
                        rows.append({"image": name, "split": split, "trimap": ts, "method": label,
                                     "network": w.stem, **all_metrics(alpha, gt, tri)})
            print(f"{name} {ts}: scored", flush=True)
    cost = {"+".join(c): sum(seconds[s] for s in c) / seconds["cf"] for c in combinations(args.solvers)}
    for r in rows:
        r["cost"] = cost[r["method"]]
    return rows


def mean_rows(rows, split) -> list[list]:
    keys = sorted({(r["network"], r["method"]) for r in rows if r["split"] == split},
                  key=lambda k: (k[0], k[1].count("+"), k[1]))
    out = []
    for net, method in keys:
        cells = [net or "(prior alone)", method, next(r["cost"] for r in rows if r["method"] == method)]
        for ts in TRIMAP_SETS:
            sel = [r for r in rows if r["split"] == split and r["trimap"] == ts
                   and r["network"] == net and r["method"] == method]
            cells += [float(np.mean([r["sad"] for r in sel])), float(np.mean([r["mse"] for r in sel])) * 1e3,
                      float(np.mean([r["grad"] for r in sel])), float(np.mean([r["conn"] for r in sel]))]
        out.append(cells)
    return out


def summarise(args, rows, weights, seconds, info) -> str:
    header = ["network", "prior", "solve time / CF"] + [f"{ts} {m}" for ts in ("t1", "t2")
                                                        for m in ("SAD", "MSE x1e-3", "Grad", "Conn")]
    text = (f"## Prior solvers for variant D{' (quick)' if args.quick else ''}\n\n{machine_line(info)}.\n\n"
            f"Models: {', '.join(describe_weights(w) for w in weights) or 'none'}. Solvers: "
            f"{', '.join(args.solvers)} (PyMatting, each image solved whole at 800 px); a prior "
            "named a+b is the mean of those alphas. Solve time is relative to closed-form on the "
            f"same images (closed-form: {seconds['cf'] / max(1, len(args.names) * 2):.2f} s an image). "
            "Choose the prior on the training images (prior alone: no training involved); the "
            "network rows on training images are not a fair test (it has seen those foregrounds).\n\n")
    for split, title in (("train", "Training images"), ("val", "Validation images (held out)")):
        table = mean_rows(rows, split)
        if table:
            text += f"{title}, means:\n\n" + markdown_table(header, table) + "\n"
    return text


def plot(args, rows) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, split in zip(axes, ("train", "val")):
        table = [r for r in mean_rows(rows, split) if r[0] == "(prior alone)"]
        if not table:
            ax.set_visible(False)
            continue
        x = np.arange(len(table))
        ax.bar(x - 0.2, [r[3] for r in table], 0.4, label="trimap1")
        ax.bar(x + 0.2, [r[7] for r in table], 0.4, label="trimap2")
        ax.set_xticks(x)
        ax.set_xticklabels([r[1] for r in table], rotation=60, fontsize=7)
        ax.set_title(f"prior alone, {split} images")
        ax.set_ylabel("mean SAD (lower is better)")
        ax.legend(fontsize=7)
    save_figure(fig, results_path("prior_solvers", args.quick, "_sad.png"))
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="validation images, solvers cf, knn, sm")
    ap.add_argument("--names", nargs="*", help="image names (default: all, or validation with --quick)")
    ap.add_argument("--solvers", nargs="*", choices=SOLVERS, help="default: all, or cf knn sm with --quick")
    ap.add_argument("--threads", type=int, default=2)
    add_weights_argument(ap)
    args = ap.parse_args(argv)
    args.solvers = tuple(args.solvers or (("cf", "knn", "sm") if args.quick else SOLVERS))
    if "cf" not in args.solvers:
        args.solvers = ("cf",) + args.solvers          # the reference every ratio is taken to
    if not find_dev_images(args, "prior_solvers"):
        return 2
    weights = chosen_weights(args)
    info = machine_info(args.threads)
    t0 = time.time()
    alphas, seconds = solve_all(args, args.names)
    rows = score(args, args.names, alphas, seconds, weights)
    summary = summarise(args, rows, weights, seconds, info)
    tail = (f"\nTotal run time {time.time() - t0:.0f} s. Plot: "
            f"`results/{results_path('prior_solvers', args.quick, '_sad.png').name}`.\n")
    per_image = markdown_table(
        ["image", "split", "trimap", "network", "prior", "SAD", "MSE x1e-3", "Grad", "Conn"],
        [[r["image"], r["split"], r["trimap"], r["network"] or "-", r["method"], r["sad"],
          r["mse"] * 1e3, r["grad"], r["conn"]] for r in rows])
    write_text_atomic(results_path("prior_solvers", args.quick, ".md"),
                      summary + "\nPer image:\n\n" + per_image + tail)
    plot(args, rows)
    update_results_section("prior_solvers" + ("_quick" if args.quick else ""), summary + tail)
    print(summary + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
