"""Snapping the unknown band's alpha to exactly 0 and 1: which threshold (``--snap``)?

Unknown pixels within the threshold of 0 or 1 become exactly 0 or 1
(``nuke_hdmatt.engine.snap``). Measured on the engine's unsnapped alphas, each threshold
applied to the same alphas:

- the 800 px dev photos under trimap1 and trimap2 (the shipped weights, float32, flip
  averaging and the engine's other defaults);
- the high-resolution composites ``benchmarks/cascade_outputs.py`` keeps (each dev image's
  ``alpha_highres`` over four 6K backgrounds, at full and half size), blended by the detail
  model fitted to the weights, as the default cascade does (``--outputs``; skipped when
  absent or made with other weights).

The threshold is chosen on the training images only: the lowest mean SAD relative to no
snapping over their sets, among thresholds that raise no set's MSE by more than
:data:`MSE_GUARD`; the validation images chose nothing.

    .venv/bin/python -m benchmarks.alpha_snap [--outputs runs/cascade_outputs_flip] [--threads 2]

Writes ``results/alpha_snap.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .cascade_outputs import DEFAULT_OUT
from .lowres_outputs import TRIMAP_SETS, dev_names
from .report import fmt, machine_info, machine_line, markdown_table, publish

THRESHOLDS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05)
#: A threshold may raise a training set's mean MSE by at most this factor.
MSE_GUARD = 1.005
SETS = ("800 px photos", "high resolution, full size", "high resolution, half size")


def lowres_cases(eng) -> list[dict]:
    """The engine's unsnapped alpha for every 800 px dev photo and trimap."""
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.training import VALIDATION_IMAGES
    cases = []
    for name in dev_names():
        for t in TRIMAP_SETS:
            image, trimap, gt = load_case(hrc.dev_dir(), name, t)
            cases.append({"set": SETS[0], "val": name in VALIDATION_IMAGES,
                          "alpha": eng.matte(image, trimap), "gt": gt, "trimap": trimap})
        print(f"{name}: 800 px", flush=True)
    return cases


def highres_cases(folder: Path) -> list[dict]:
    """The default cascade's alpha (the detail model's blend) of every kept composite whose
    weights are the shipped ones; none when there are none."""
    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS, load_detail_model, verified_sha256
    from nuke_hdmatt.training import VALIDATION_IMAGES
    sha = verified_sha256(BUNDLED_WEIGHTS)
    model, _ = load_detail_model(BUNDLED_WEIGHTS, sha)
    cases = []
    for path in sorted(folder.glob("*.npz")) if model is not None else []:
        with np.load(path) as z:
            if str(z["weights_sha256"]) != sha:
                continue
            f = {k: z[k].astype(np.float32) for k in ("image", "trimap", "alpha", "coarse", "full")}
        alpha = model.blend(f["image"], f["trimap"], f["coarse"], f["full"])
        cases.append({"set": SETS[2] if path.stem.endswith("_s2") else SETS[1],
                      "val": path.stem.split("_")[0] in VALIDATION_IMAGES,
                      "alpha": alpha, "gt": f["alpha"], "trimap": f["trimap"]})
        print(f"{path.stem}: blended", flush=True)
    return cases


def score(cases: list[dict], grad: bool) -> None:
    """Each case's SAD and MSE (and Grad where ``grad``) at every threshold, in place."""
    from nuke_hdmatt import metrics
    from nuke_hdmatt.engine.snap import snap_alpha
    for c in cases:
        band = c["trimap"] == 0.5
        c["scores"] = {}
        for t in THRESHOLDS:
            a = snap_alpha(c["alpha"].copy(), band, t)
            s = {"sad": metrics.sad(a, c["gt"], c["trimap"]),
                 "mse": 1e3 * metrics.mse(a, c["gt"], c["trimap"])}
            if grad:
                s["grad"] = metrics.grad(a, c["gt"], c["trimap"])
            c["scores"][t] = s


def means(cases: list[dict], val: bool) -> dict:
    """{set: {threshold: {metric: mean}}} over the training (or validation) cases."""
    out: dict = {}
    for name in SETS:
        sel = [c for c in cases if c["set"] == name and c["val"] == val]
        if sel:
            out[name] = {t: {q: float(np.mean([c["scores"][t][q] for c in sel]))
                             for q in sel[0]["scores"][t]} for t in THRESHOLDS}
            out[name]["n"] = len(sel)
    return out


def choose(train: dict, thresholds=THRESHOLDS) -> tuple[float, dict]:
    """The rule in the module docstring; (threshold, its mean relative SAD per threshold).
    ``train``: {set: {threshold: {"sad": ..., "mse": ...}}}, 0 among the thresholds."""
    rel = {t: float(np.mean([train[s][t]["sad"] / train[s][0.0]["sad"] for s in train]))
           for t in thresholds}
    allowed = [t for t in thresholds
               if all(train[s][t]["mse"] <= MSE_GUARD * train[s][0.0]["mse"] for s in train)]
    return min(allowed, key=lambda t: rel[t]), rel


def tables(split: dict, chosen: float, label: str) -> str:
    text = ""
    for name, rows in split.items():
        metrics = [q for q in ("sad", "mse", "grad") if q in rows[0.0]]
        header = ["threshold"] + [{"sad": "SAD", "mse": "MSE x1e-3", "grad": "Grad"}[q]
                                  for q in metrics] + ["SAD vs none"]
        body = [[f"{t:g}" + (" (chosen)" if t == chosen else "")]
                + [fmt(rows[t][q], 3) for q in metrics]
                + [fmt(rows[t]["sad"] / rows[0.0]["sad"], 4)] for t in THRESHOLDS]
        text += f"{label}, {name} ({rows['n']} alphas):\n\n" + markdown_table(header, body) + "\n\n"
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outputs", type=Path, default=Path(str(DEFAULT_OUT) + "_flip"),
                    help="benchmarks.cascade_outputs' folder of the default cascade's alphas")
    args, eng = hrc.engine_from_args(ap, argv, precision="fp32", snap=0.0)
    if eng is None:
        return 2
    low = lowres_cases(eng)
    score(low, grad=True)
    high = highres_cases(args.outputs)
    score(high, grad=False)
    cases = low + high
    train, val = means(cases, False), means(cases, True)
    chosen, rel = choose(train)
    text = (f"## Snapping the unknown band to 0 and 1 (`--snap`)\n\n"
            f"{machine_line(machine_info())}.\n\n"
            "Unknown pixels within the threshold of 0 or 1 set to exactly 0 or 1, on the "
            "engine's unsnapped alphas: the 800 px dev photos under trimap1 and trimap2 "
            "(shipped weights, float32, flip averaging on), and the default cascade's alphas "
            f"of the high-resolution composites in `{args.outputs.name}` "
            f"({len(high)} found: each image over four 6K backgrounds, full and half size; the "
            "detail model's blend). Chosen on the training images: the lowest mean SAD "
            "relative to none over their sets, among thresholds raising no set's MSE by more "
            f"than {100 * (MSE_GUARD - 1):.1f} %; mean relative SAD: "
            + ", ".join(f"{t:g} {rel[t]:.4f}" for t in THRESHOLDS)
            + f". **Chosen: {chosen:g}.** The validation images chose nothing.\n\n"
            + tables(train, chosen, "Training images") + tables(val, chosen, "Validation images"))
    publish("alpha_snap", False, text)
    print(f"chosen: {chosen:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
