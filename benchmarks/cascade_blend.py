"""How the cascade should blend its two alphas: a fixed step against a predicted one.

Reads ``benchmarks/cascade_outputs.py``'s files (the enlarged 1024 px alpha and the
full-resolution pass on high-resolution composites of the dev images), or with ``--study
prior`` ``benchmarks/lowres_outputs.py``'s (the classical prior and the network's alpha on
frames the engine does not cascade: the 800 px dev photos and composites at their scale).
Everything is chosen on the 13 training images' frames and reported on the 5 validation
images' (which made no choice here):

  fixed step s    ``coarse + s (full - coarse)``, s chosen on the fit split (0-1 by 0.05);
  predicted       :class:`nuke_hdmatt.engine.detail.DetailModel` (logistic, or one hidden
                  layer; the ``step`` head, or ``snap``, which may also move the blend to 0
                  or 1) fitted by L1 to the ground truth on pixels sampled from the fit
                  split; its head, size and the composite scales it is fitted on chosen
                  by leave-images-out cross-validation within the fit split;
  oracles         the best step per pixel and per 32 px block, chosen with the ground truth
                  (upper bounds, not methods).

    .venv/bin/python -m benchmarks.cascade_blend [--save nuke_hdmatt/model/hdmatt.safetensors.detail.json]
    .venv/bin/python -m benchmarks.cascade_blend --study prior [--save ...]

Writes ``results/<study's section>.md`` and its section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nuke_hdmatt import metrics
from nuke_hdmatt.atomic import write_text_atomic
from nuke_hdmatt.engine.detail import (
    EXTRA_FEATURES,
    FEATURES,
    HEADS,
    DetailModel,
    features,
    head_alpha,
    perceptron,
)
from nuke_hdmatt.training import VALIDATION_IMAGES

from .cascade_outputs import DEFAULT_OUT, output_scale
from .lowres_outputs import DEFAULT_OUT as LOWRES_OUT
from .report import fmt, machine_info, machine_line, markdown_table, publish

SAMPLES = 30_000
FOLDS = 4
ITERS = 1500            # Adam steps of the final fit
CV_ITERS = 600          # and of each cross-validation fit
BATCH = 65_536          # samples a step
STEPS = np.round(np.arange(0, 1.0001, 0.05), 2)
#: The feature sets a model may read; samples carry every column of :data:`SAMPLED`.
FEATURE_SETS = {"base": FEATURES, "extended": FEATURES + EXTRA_FEATURES}
SAMPLED = FEATURES + EXTRA_FEATURES


@dataclass(frozen=True)
class Study:
    """Which two alphas are blended: where their files are, what the report calls them."""
    section: str
    title: str
    folder: Path
    frames: str                 # what the files hold, for the report
    coarse: str                 # the method names of the two alphas alone
    full: str
    fixed: str                  # the method name of the quarter step


STUDIES = {
    "cascade": Study("cascade_blend", "Cascade blend: fixed and predicted steps", DEFAULT_OUT,
                     "Composites of every dev image with a high-resolution ground truth over "
                     "6K backgrounds", "detail 0 (1024 px alpha)", "detail 1 (full pass)",
                     "fixed 0.25 (before)"),
    "prior": Study("prior_blend", "Prior blend: the network's alpha and the classical prior "
                   "on frames within 1024 px", LOWRES_OUT,
                   "The 800 px dev photos and their foregrounds over 6K backgrounds reduced "
                   "4x, under trimap1 and trimap2", "the prior alone", "the network alone",
                   "fixed 0.25"),
}


def load(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k].astype(np.float32) for k in z.files if k != "weights_sha256"}


def outputs_sha256(paths: list[Path]) -> set[str]:
    """The weights the composites were run with (files from before the record: the bundled
    weights, unchanged since)."""
    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS, verified_sha256
    found = set()
    for p in paths:
        with np.load(p) as z:
            found.add(str(z["weights_sha256"]) if "weights_sha256" in z.files
                      else verified_sha256(BUNDLED_WEIGHTS))
    return found


def frame_features(fr: dict) -> tuple[np.ndarray, np.ndarray]:
    """(unknown mask, (N, F) features of the unknown pixels, every column of :data:`SAMPLED`)."""
    t = torch.from_numpy(fr["trimap"])
    with torch.no_grad():
        f = features(torch.from_numpy(fr["image"]).permute(2, 0, 1), t,
                     torch.from_numpy(fr["coarse"]), torch.from_numpy(fr["full"]), SAMPLED)
    unknown = fr["trimap"] == 0.5
    return unknown, f.permute(1, 2, 0).numpy()[unknown]


def widths(hidden) -> tuple[int, ...]:
    """A model's hidden layer widths: 0 (logistic), one width, or a stack of them."""
    if isinstance(hidden, int):
        return (hidden,) if hidden else ()
    return tuple(hidden)


def hidden_sizes(text: str):
    """``--hidden`` values: 0 (logistic), a width (32) or stacked widths (64x64)."""
    sizes = tuple(int(v) for v in text.split("x"))
    if any(v < 0 for v in sizes) or (len(sizes) > 1 and 0 in sizes):
        raise ValueError(text)
    return sizes[0] if len(sizes) == 1 else sizes


def fit(x: np.ndarray, c: np.ndarray, d: np.ndarray, gt: np.ndarray, hidden,
        head: str = "step", iters: int = ITERS, seed: int = 0,
        names: tuple[str, ...] = FEATURES) -> DetailModel:
    """A detail model fitted by L1 to ``gt`` on samples (features ``x``, the columns
    ``names``, coarse ``c``, ``d = full - coarse``), with hidden layers :func:`widths`
    ``(hidden)``; it starts as the fixed step 0.25 (``snap``: keeping the blend)."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    ct, dt, gtt = (torch.from_numpy(a) for a in (c, d, gt))
    ft = ct + dt
    sizes = [x.shape[1], *widths(hidden), HEADS[head]]
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        w = (torch.randn(o, i) * (1 / np.sqrt(i))).requires_grad_()
        b = torch.zeros(o).requires_grad_()
        params.append((w, b))
    with torch.no_grad():
        params[-1][1][0] = float(np.log(0.25 / 0.75))
        if head == "snap":
            params[-1][1][1] = 4.0
        params[-1][0].mul_(0.01)
    opt = torch.optim.Adam([p for wb in params for p in wb], lr=0.02)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        i = torch.randint(len(xt), (BATCH,), generator=gen) if len(xt) > BATCH else slice(None)
        loss = (head_alpha(head, perceptron(xt[i], params), ct[i], ft[i]) - gtt[i]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return DetailModel(mean.astype(np.float32), std.astype(np.float32),
                       [(w.detach().numpy(), b.detach().numpy()) for w, b in params], head,
                       tuple(names))


def predict(model: DetailModel, x: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.alpha(*(torch.from_numpy(a) for a in (x, c, c + d))).numpy()


def fit_candidate(candidate: tuple, x, c, d, gt, iters: int) -> DetailModel:
    """``fit`` on the columns of ``x`` (laid out as :data:`SAMPLED`) that the candidate's
    feature set names."""
    head, hidden, _, feature_set = candidate
    names = FEATURE_SETS[feature_set]
    return fit(x[:, [SAMPLED.index(n) for n in names]], c, d, gt, hidden, head,
               iters=iters, names=names)


def predict_columns(model: DetailModel, x: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    return predict(model, x[:, [SAMPLED.index(n) for n in model.names]], c, d)


def choose_model(groups: dict, candidates: list[tuple], folds: int = FOLDS,
                 iters: int = CV_ITERS) -> tuple[tuple, dict]:
    """The (head, hidden size, fitted scales, feature set) with the lowest held-out L1 over
    ``folds`` folds of the fit split's images, and every candidate's figure. ``groups``:
    (image name, scale) -> (x, c, d, gt) samples, x's columns laid out as :data:`SAMPLED`
    (the base set's alone will do for base candidates); a candidate fits on its scales of
    the other folds' images and is scored on every scale of the held-out images (the engine
    meets frames of any size)."""
    names = sorted({n for n, _ in groups})
    scores = {}
    for cand in candidates:
        scales = cand[2]
        errs = []
        for k in range(folds):
            held = names[k::folds]
            train = [g for (n, sc), g in groups.items() if n not in held and sc in scales]
            x, c, d, gt = (np.concatenate([g[i] for g in train]) for i in range(4))
            model = fit_candidate(cand, x, c, d, gt, iters)
            for (n, _), (x, c, d, gt) in groups.items():
                if n in held:
                    errs.append(float(np.abs(predict_columns(model, x, c, d) - gt).mean()))
        key = (cand[0], cand[1], tuple(scales), cand[3])
        scores[key] = float(np.mean(errs))
        print(f"{label(key)}: held-out L1 {scores[key]:.5f}", flush=True)
    return min(scores, key=scores.get), scores


def scale_name(scale: int) -> str:
    return "full size" if scale == 1 else f"1/{scale} size"


def label(candidate: tuple) -> str:
    head, hidden, scales, feature_set = candidate
    sizes = "x".join(map(str, widths(hidden)))
    return (f"{head} head, " + (f"hidden {sizes}" if sizes else "logistic")
            + ", fitted at " + " and ".join(map(scale_name, scales)) + f", {feature_set} features")


def block_oracle(c, d, gt, unknown, block=32) -> np.ndarray:
    out = c.copy()
    h, w = c.shape
    for y in range(0, h, block):
        for x in range(0, w, block):
            sl = np.s_[y:y + block, x:x + block]
            m = unknown[sl]
            if not m.any():
                continue
            errs = [np.abs(c[sl][m] + s * d[sl][m] - gt[sl][m]).sum() for s in STEPS]
            out[sl] = c[sl] + STEPS[int(np.argmin(errs))] * d[sl]
    return out


def scale_sets(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in text.split(",")}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=sorted(STUDIES), default="cascade",
                    help="the two alphas to blend (default: the cascade's)")
    ap.add_argument("--dir", type=Path, help="their files (default: the study's folder)")
    ap.add_argument("--hidden", type=hidden_sizes, nargs="+", default=[8, 16, 32],
                    help="hidden sizes to choose from (0: logistic; 64x64: two layers)")
    ap.add_argument("--heads", nargs="+", choices=sorted(HEADS), default=["step", "snap"],
                    help="heads to choose from")
    ap.add_argument("--fit-scales", type=scale_sets, nargs="+",
                    help="sets of composite scales to fit on, to choose from, e.g. 1 1,2 "
                         "(default: full size, and every scale found when there are more)")
    ap.add_argument("--feature-sets", nargs="+", choices=sorted(FEATURE_SETS),
                    default=sorted(FEATURE_SETS), help="feature sets to choose from")
    ap.add_argument("--iters", type=int, default=ITERS, help="Adam steps of the final fit")
    ap.add_argument("--incumbent", type=Path,
                    help="a detail file to measure beside the refit: its L1 on every "
                         "fit-split sample (in-sample where it was fitted on those images, "
                         "so favoured) and its validation rows")
    ap.add_argument("--save", type=Path,
                    help="write the predicted model as the weights' detail file "
                         "(<weights>.detail.json)")
    args = ap.parse_args(argv)
    study = STUDIES[args.study]
    folder = args.dir or study.folder
    paths = sorted(p for p in folder.glob("*.npz") if not p.name.endswith(".tmp.npz"))
    found = tuple(sorted({output_scale(p) for p in paths}))
    sets = args.fit_scales or sorted({(1,), found})
    fit_paths = [p for p in paths if p.name.split("_")[0] not in VALIDATION_IMAGES]
    rep_paths = [p for p in paths if p.name.split("_")[0] in VALIDATION_IMAGES]
    if not fit_paths or not rep_paths or not set(found) >= {s for st in sets for s in st}:
        print(f"cascade_blend: need frames of both splits, at scales {sets}, in {folder}",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    groups: dict = {}
    fixed_err = np.zeros(len(STEPS))
    full_fit = [p for p in fit_paths if output_scale(p) == 1]
    for p in fit_paths:
        fr = load(p)
        unknown, x = frame_features(fr)
        c, d, gt = fr["coarse"][unknown], (fr["full"] - fr["coarse"])[unknown], fr["alpha"][unknown]
        if output_scale(p) == 1:
            fixed_err += [np.abs(c + s * d - gt).sum() / 1000 for s in STEPS]
        pick = rng.choice(len(c), min(SAMPLES, len(c)), replace=False)
        sample = (x[pick], c[pick], d[pick], gt[pick])
        key = (p.name.split("_")[0], output_scale(p))
        groups[key] = tuple(np.concatenate([a, b]) for a, b in zip(groups[key], sample)) \
            if key in groups else sample
    step = float(STEPS[int(np.argmin(fixed_err))])
    print(f"fit split: {len(fit_paths)} frames; fixed step chosen {step} on the "
          f"{len(full_fit)} at full size (mean SAD {fixed_err.min() / len(full_fit):.2f}; at "
          f"0.25: {fixed_err[5] / len(full_fit):.2f})", flush=True)
    chosen_key, cv = choose_model(
        groups, [(h, n, st, fs) for fs in args.feature_sets for st in sets
                 for h in args.heads for n in args.hidden])
    scales = chosen_key[2]
    x, c, d, gt = (np.concatenate([g[i] for (_, sc), g in groups.items() if sc in scales])
                   for i in range(4))
    chosen = "predicted, " + label(chosen_key)
    models = {chosen: fit_candidate(chosen_key, x, c, d, gt, args.iters)}
    incumbent_line = ""
    if args.incumbent:
        name = f"incumbent ({args.incumbent.name})"
        models[name] = DetailModel.from_dict(json.loads(args.incumbent.read_text())["model"])
        l1 = float(np.mean([np.abs(predict_columns(models[name], *g[:3]) - g[3]).mean()
                            for g in groups.values()]))
        incumbent_line = (f"; the incumbent {args.incumbent.name} on the same samples: L1 "
                          f"{l1:.5f} (in-sample where it was fitted on these images)")
        print(f"incumbent {args.incumbent}: fit-split L1 {l1:.5f}", flush=True)
    methods = [study.coarse, study.fixed, f"fixed {step} (chosen)",
               study.full, *models, "oracle per 32 px block", "oracle per pixel"]
    per: dict = {}
    rows = []
    for p in rep_paths:
        fr = load(p)
        c, f, gt, t = fr["coarse"], fr["full"], fr["alpha"], fr["trimap"]
        unknown = t == 0.5
        d = f - c
        outs = {methods[0]: c, methods[1]: c + 0.25 * d, methods[2]: c + step * d,
                methods[3]: f}
        for name, model in models.items():
            outs[name] = model.blend(fr["image"], t, c, f)
        outs["oracle per 32 px block"] = block_oracle(c, d, gt, unknown)
        best = np.clip(np.where(np.abs(d) > 1e-6, (gt - c) / np.where(d == 0, 1, d), 0), 0, 1)
        outs["oracle per pixel"] = c + best * d
        for m in methods:
            a = np.clip(outs[m], 0, 1)
            r = (metrics.sad(a, gt, t), 1e3 * metrics.mse(a, gt, t), metrics.grad(a, gt, t))
            per.setdefault((output_scale(p), m), []).append(r)
            rows.append([p.stem, m, *(fmt(v) for v in r)])
        print(p.stem, " ".join(f"{per[output_scale(p), m][-1][0]:.2f}" for m in methods),
              flush=True)
    tables = ""
    for sc in found:
        n = len(per[sc, methods[0]])
        tables += (f"{'Full size' if sc == 1 else f'Block-averaged to {scale_name(sc)}'} "
                   f"({n} frames):\n\n"
                   + markdown_table(["method", "SAD", "MSE x1e-3", "Grad"],
                                    [[m, *(fmt(v) for v in np.mean(per[sc, m], axis=0))]
                                     for m in methods]) + "\n\n")
    kinds = sorted({re.sub(r"_s\d+$", "", p.stem.split("_", 1)[1]) for p in paths})
    text = (f"## {study.title}\n\n{machine_line(machine_info())}.\n\n"
            f"{study.frames} ({', '.join(kinds)}"
            f"), at {' and '.join(map(scale_name, found))}; fit "
            f"split: {len(fit_paths)} frames of the training images (fixed step chosen "
            f"there at full size: {step}; feature set, head, hidden size and the scales to "
            f"fit on by "
            f"{FOLDS}-fold leave-images-out cross-validation there, scored on every scale "
            f"({CV_ITERS} steps each; final fit {args.iters}), held-out L1 "
            f"{'; '.join(f'{label(k)}: {v:.5f}' for k, v in cv.items())}; chosen: "
            f"{label(chosen_key)}{incumbent_line}); report split: {len(rep_paths)} frames of the validation "
            f"images, which chose nothing. Oracles choose with the ground truth (upper "
            f"bounds).\n\n" + tables + "Per composite:\n\n"
            + markdown_table(["composite", "method", "SAD", "MSE x1e-3", "Grad"], rows) + "\n")
    publish(study.section, False, text)
    if args.save:
        shas = outputs_sha256(paths)
        if len(shas) != 1:
            print(f"cascade_blend: the composites come from {len(shas)} different weights",
                  file=sys.stderr)
            return 2
        record = {"weights_sha256": shas.pop(), "fitted": chosen,
                  "fit_split": sorted({p.name.split("_")[0] for p in fit_paths}),
                  "fit_scales": list(scales),
                  "report_split": sorted({p.name.split("_")[0] for p in rep_paths}),
                  "report_sad": {m: round(float(np.mean([r[0] for r in per[1, m]])), 3)
                                 for m in methods},
                  "model": models[chosen].to_dict()}
        write_text_atomic(args.save, json.dumps(record, indent=1) + "\n")
        print(f"saved {chosen} to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
