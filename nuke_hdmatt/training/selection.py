"""Choosing a checkpoint without grading it on the images that chose it.

A run validates every few minutes on the held-out dev images (``history``: one entry per
validated step, each with ``per_image`` metrics, see :func:`.validation.evaluate_engine`).
Picking the best step on those images and quoting its figure is optimistic. Here the images
are split into folds: for each fold, the step is chosen on the other folds' images and
graded on the fold's own, so every image is graded by a choice it took no part in. The
cross-validated figure is the mean of those grades; the step to ship is the one chosen on
all images (its own figure is reported beside, as the optimistic one).

    python -m nuke_hdmatt.training.selection runs/d5/history.json [--folds GT02,GT10/GT18,GT24,GT27]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..errors import ArgumentParser, UsageError, run_reporting

__all__ = ["image_names", "mean_metric", "choose_step", "cross_validate", "main"]

METRICS = ("sad", "mse", "grad", "conn")


def image_names(entry: dict) -> list[str]:
    """The dev images of a history entry (``GT02`` of ``GT02/trimap1``), sorted."""
    return sorted({key.split("/")[0] for key in entry["per_image"]})


def mean_metric(entry: dict, images, metric: str = "sad", method: str = "model") -> float:
    """Mean of ``metric`` over every trimap of ``images`` in one history entry."""
    values = [m[method][metric] for key, m in entry["per_image"].items()
              if key.split("/")[0] in images]
    if not values:
        raise ValueError(f"no validation results for {sorted(images)}")
    return float(np.mean(values))


def choose_step(history: list, images, metric: str = "sad") -> dict:
    """The entry with the lowest mean ``metric`` over ``images`` (earliest on ties)."""
    return min(history, key=lambda e: (mean_metric(e, images, metric), e["step"]))


def cross_validate(history: list, folds: list[list[str]]) -> dict:
    """Per fold: the step chosen on the other folds and its metrics on the fold's images.

    Returns ``{"folds": [...], "cv": {metric: mean over folds' images}, "chosen_on_all":
    step, "optimistic": {metric: ...}}``; ``cv`` weights each graded image equally.
    """
    history = [e for e in history if e.get("per_image")]
    if not history:
        raise ValueError("the history holds no per-image validation results")
    everything = sorted({n for f in folds for n in f})
    rows: list[dict] = []
    graded: dict[str, list[float]] = {m: [] for m in METRICS}
    for fold in folds:
        others = [n for n in everything if n not in fold]
        pick = choose_step(history, others)
        grade = {m: mean_metric(pick, fold, m) for m in METRICS}
        prior = {m: mean_metric(pick, fold, m, "prior") for m in METRICS}
        rows.append({"graded_on": fold, "chosen_on": others, "step": pick["step"],
                     "model": grade, "prior": prior})
        for m in METRICS:
            graded[m].extend(mean_metric(pick, [n], m) for n in fold)
    best = choose_step(history, everything)
    return {"folds": rows, "cv": {m: float(np.mean(v)) for m, v in graded.items()},
            "chosen_on_all": best["step"],
            "optimistic": {m: mean_metric(best, everything, m) for m in METRICS},
            "prior": {m: mean_metric(best, everything, m, "prior") for m in METRICS}}


def _parse_folds(text: str | None, names: list[str]) -> list[list[str]]:
    if text:
        return [[n.strip().upper() for n in f.split(",") if n.strip()] for f in text.split("/")]
    return [[n] for n in names]          # leave one image out


def main(argv=None) -> int:
    prog = "python -m nuke_hdmatt.training.selection"
    ap = ArgumentParser(prog=prog, description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("history", help="history.json of a run (a list of validation entries)")
    ap.add_argument("--folds", default=None,
                    help="image folds, e.g. GT02,GT10/GT18,GT24,GT27 (default: leave one out)")
    ap.add_argument("--out", default=None, help="write the result as JSON here")

    def body():
        args = ap.parse_args(argv)
        try:
            history = json.loads(Path(args.history).read_text())
            names = image_names(history[-1])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"not a run's validation history ({exc})", path=args.history) from None
        folds = _parse_folds(args.folds, names)
        unknown = sorted({n for f in folds for n in f} - set(names))
        if unknown:
            raise UsageError(f"--folds: {', '.join(unknown)} not among the run's validation "
                             f"images ({', '.join(names)})")
        if len(names) < 2 or len(folds) < 2:
            # a fold is graded by a step chosen on the others: one image or fold leaves none
            raise UsageError(f"cross-validation needs at least two images and two folds; the "
                             f"run validated on {', '.join(names) or 'none'}", path=args.history)
        try:
            result = cross_validate(history, folds)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"not a run's validation history ({exc})", path=args.history) from None
        for row in result["folds"]:
            print(f"graded on {','.join(row['graded_on'])}: step {row['step']} (chosen on "
                  f"{','.join(row['chosen_on'])}) SAD {row['model']['sad']:.2f} vs prior "
                  f"{row['prior']['sad']:.2f}")
        cv, opt = result["cv"], result["optimistic"]
        print(f"cross-validated: SAD {cv['sad']:.3f} MSE {cv['mse'] * 1e3:.2f} Grad {cv['grad']:.2f} "
              f"Conn {cv['conn']:.2f}; chosen on all: step {result['chosen_on_all']} "
              f"(SAD {opt['sad']:.3f}, optimistic)")
        if args.out:
            try:
                write_text_atomic(Path(args.out), json.dumps(result, indent=1))
            except OSError as exc:
                raise UsageError(f"--out: cannot write ({exc.strerror or exc})",
                                 path=args.out) from None

    return run_reporting(prog, body)


if __name__ == "__main__":
    sys.exit(main())
