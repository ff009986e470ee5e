"""``hdmatt train``: train an HDMatt network on a pre-generated sample folder.

    python -m nuke_hdmatt.training.dataset build --out runs/data192 --n 8000 --patch 192
    hdmatt train --data runs/data192 --run runs/d1 --variant D --minutes 90

The sample folder may still be growing (a builder running beside the trainer): it is
listed again at every epoch. Interrupt at any time; the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ArgumentParser, UsageError, run_reporting


def rotate_queries(batch: dict, gen, p_rotate: float = 0.5, min_unknown: float = 0.02) -> dict:
    """Let a context patch that holds unknown pixels serve as the query (the rest as its context).

    The closed-form prior makes a sample cost more than a training step; every patch of
    a sample comes from the same composite, so each can be a query for the others."""
    import torch
    tri = batch["trimap"]
    frac = ((tri > 0.25) & (tri < 0.75)).float().mean(dim=(2, 3))      # (B, P+1)
    order = []
    for b in range(tri.shape[0]):
        ok = [j for j in range(1, tri.shape[1]) if frac[b, j] >= min_unknown]
        j = 0
        if ok and torch.rand((), generator=gen).item() < p_rotate:
            j = ok[int(torch.randint(len(ok), (), generator=gen))]
        order.append([j] + [i for i in range(tri.shape[1]) if i != j])
    idx = torch.tensor(order)
    ar = torch.arange(tri.shape[0])[:, None]
    return {k: (v[ar, idx] if torch.is_tensor(v) and v.dim() >= 2 else v) for k, v in batch.items()}


def split_batch(batch: dict) -> dict:
    """Dataset batch (patch axis 1, index 0 = query) -> trainer keys."""
    out = {}
    for k in ("image", "fg", "bg"):
        out[k] = batch[k][:, 0]
    for k in ("trimap", "alpha", "prior"):
        if k in batch:
            out[k] = batch[k][:, 0, None]
    out["ctx_image"] = batch["image"][:, 1:]
    out["ctx_trimap"] = batch["trimap"][:, 1:, None]
    if "prior" in batch:
        out["ctx_prior"] = batch["prior"][:, 1:, None]
    return out


def loader_factory(data: list[Path], batch: int, seed: int, min_samples: int, workers: int = 0,
                   with_prior: bool | None = None):
    """Batches of the folders' samples; waits (a builder beside the trainer) until they hold
    ``min_samples`` and at least a batch."""
    import time

    import torch

    from .dataset import PatchFolderDataset, sample_paths

    def factory(step: int):
        need = max(min_samples, batch)     # fewer than a batch: drop_last would give none
        while sum(len(sample_paths(d)) for d in data) < need:
            print(f"waiting for at least {need} samples in {data} ...", flush=True)
            time.sleep(20)
        parts = [PatchFolderDataset(d, seed=seed, with_prior=with_prior)
                 for d in data if sample_paths(d)]
        ds: torch.utils.data.ConcatDataset[Any] = torch.utils.data.ConcatDataset(parts)
        for part in parts:
            part.set_epoch(step)
        epoch = step // max(1, len(ds) // batch)
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=g,
                                         drop_last=True, num_workers=workers,
                                         pin_memory=torch.cuda.is_available())
        return (split_batch(rotate_queries(b, g)) for b in dl)
    return factory


def check_folders(folders, variant: str, val_images) -> None:
    """Refuse now what would fail or mislead later: a folder that is no sample folder (no
    manifest, no samples and other things in it: the trainer would wait forever), folders of different patch
    sizes or context counts (batches cannot stack them), no priors for variant D, and
    samples built from a validation image (the figures would grade what it trained on)."""
    import json

    from .dataset import MANIFEST, sample_paths
    shapes: dict[tuple, list[str]] = {}
    for d in folders:
        manifest = Path(d) / MANIFEST
        if not manifest.is_file():
            # an empty folder may be one a builder is about to start on (it waits for it);
            # one holding other things (a parent of sample folders) never will be
            if not sample_paths(d) and any(Path(d).iterdir()):
                raise UsageError("not a sample folder (no manifest.json, no samples): build one "
                                 "with `python -m nuke_hdmatt.training.dataset build`", path=str(d))
            continue
        try:
            config = json.loads(manifest.read_text()).get("config", {})
        except (OSError, ValueError):
            raise UsageError("unreadable manifest", path=str(manifest)) from None
        shapes.setdefault((config.get("patch"), config.get("n_context")), []).append(str(d))
        if variant == "D" and config.get("prior") is False:
            raise UsageError("samples were built with --no-prior; variant D needs priors",
                             path=str(d))
        if "holdout" in config:
            leaked = sorted(set(val_images) - {str(h).upper() for h in config["holdout"]})
            if leaked:
                raise UsageError(f"samples were built from validation image(s) "
                                 f"{', '.join(leaked)} (their --holdout); rebuild holding them "
                                 "out, or give other --val-images", path=str(d))
    if len(shapes) > 1:
        raise UsageError("sample folders of different patch sizes or context counts: "
                         + "; ".join(f"patch {p}, context {c}: {', '.join(v)}"
                                     for (p, c), v in shapes.items()))


def samples_prior_solver(folders, requested: str | None, init=None) -> str:
    """The prior solver the sample folders were built with; they must agree with each other
    and with ``requested`` (a network fed another solver's priors than it meets at inference
    learns the wrong corrections). Read from the folders' manifests, which builders write
    before their first sample (a run may start while its folders are still empty); with no
    manifest yet, the solver of the ``init`` weights, else closed-form."""
    from ..engine.config import ModelConfig, prior_solver_names
    from .dataset import manifest_prior_solver
    if requested:
        try:
            prior_solver_names(requested)
        except ValueError as exc:
            raise UsageError(f"--prior-solver: {exc}") from None
    found: dict[str, list[str]] = {}
    for d in folders:
        solver = manifest_prior_solver(d)
        if solver:
            found.setdefault(solver, []).append(str(d))
    if len(found) > 1:
        raise UsageError("sample folders hold priors of different solvers: "
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items()))
    built = next(iter(found), None)
    if requested and built and requested != built:
        raise UsageError(f"--prior-solver {requested}, but the samples were built with {built}",
                         path=found[built][0])
    if requested:
        return requested
    if built:
        return built
    if init:
        from ..engine.weights import read_header
        return ModelConfig.from_json(read_header(Path(init))["config"]).prior_solver
    return "cf"


def main(argv=None) -> int:
    from .. import training
    ap = ArgumentParser(prog="hdmatt train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="sample folder(s) from `dataset build`, comma-separated")
    ap.add_argument("--run", required=True, help="run folder: checkpoints, best weights, logs")
    ap.add_argument("--preset", default=None, choices=("light", "paper"),
                    help="a new network's configuration (default light); --init weights "
                         "bring their own")
    ap.add_argument("--variant", default="D", choices=("A", "B", "C", "D"))
    ap.add_argument("--init", default=None, help="weights to fine-tune from")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4000, help="length of the cosine schedule")
    ap.add_argument("--minutes", type=float, default=0,
                    help="stop after this much wall time (the cosine schedule then ends there too)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--val-minutes", type=float, default=12)
    ap.add_argument("--ckpt-minutes", type=float, default=4)
    ap.add_argument("--val-data", default=str(training.shared_data_dir() / "alphamatting-dev"))
    ap.add_argument("--val-images", default=",".join(training.VALIDATION_IMAGES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior-solver", default=None, metavar="S",
                    help="variant D's prior solver (default: the one the samples were built with)")
    ap.add_argument("--validate-first", action="store_true", help="validate before the first step")
    ap.add_argument("--warmup", action="store_true",
                    help="raise the learning rate linearly over the first 50 steps")
    ap.add_argument("--workers", type=int, default=0, help="data-loading processes (0: in the trainer)")
    ap.add_argument("--keep-val-weights", action="store_true",
                    help="keep the weights of every validated step (val_stepNNNNNN.safetensors), "
                         "to choose a checkpoint by cross-validation afterwards")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="hold BatchNorm's statistics at the --init weights' (a fine-tune at a "
                         "small batch otherwise re-estimates them from a few patches a step)")
    args = ap.parse_args(argv)
    from .trainer import TrainSettings, train
    from .validation import load_pairs
    s = TrainSettings(run=Path(args.run), data=Path(args.data), preset=args.preset or "light",
                      variant=args.variant, init=Path(args.init) if args.init else None,
                      batch=args.batch, steps=args.steps, minutes=args.minutes, lr=args.lr,
                      ckpt_minutes=args.ckpt_minutes, val_minutes=args.val_minutes,
                      threads=args.threads, seed=args.seed, validate_first=args.validate_first,
                      prior_solver=args.prior_solver, keep_val_weights=args.keep_val_weights,
                      warmup=args.warmup, freeze_bn=args.freeze_bn)

    def body():
        folders = [Path(d) for d in args.data.split(",") if d]
        missing = [str(d) for d in folders if not d.is_dir()]
        if missing or not folders:
            raise UsageError("no such sample folder (make one with `python -m "
                             "nuke_hdmatt.training.dataset build`)", path=", ".join(missing) or args.data)
        if args.freeze_bn and not args.init:
            # a new network's statistics are 0 and 1: frozen, they would normalise nothing
            raise UsageError("--freeze-bn holds the statistics of --init weights; give --init")
        if args.steps < 1 or args.batch < 1 or args.workers < 0 or args.threads < 1:
            raise UsageError("--steps, --batch and --threads must be at least 1, --workers "
                             "at least 0")
        if not args.lr > 0 or args.minutes < 0 or args.min_samples < 0:
            raise UsageError("--lr must be above 0, --minutes and --min-samples 0 or more")
        if args.preset and args.init:
            raise UsageError("--preset applies to a new network; the --init weights bring their "
                             "own configuration")
        if Path(args.run).exists() and not Path(args.run).is_dir():
            raise UsageError("--run: is a file, not a folder", path=args.run)
        names = [n.strip().upper() for n in args.val_images.split(",") if n.strip()]
        check_folders(folders, args.variant, names)
        s.prior_solver = samples_prior_solver(folders, args.prior_solver, args.init)
        import torch
        torch.set_num_threads(args.threads)
        val_dir = Path(args.val_data)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        pairs = load_pairs(val_dir, names, solver=s.prior_solver, device=device) \
            if names and val_dir.exists() else []
        if not pairs:
            print(f"note: no validation images ({val_dir}); training without validation", file=sys.stderr)
        train(s, loader_factory(folders, args.batch, args.seed, args.min_samples, args.workers,
                                with_prior=True if args.variant == "D" else None), pairs)

    return run_reporting("hdmatt", body, "interrupted; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
