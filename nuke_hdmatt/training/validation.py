"""Validation on held-out real images, with the inference engine exactly as shipped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import save_npy_atomic
from ..devset import load_case
from ..metrics import all_metrics


@dataclass
class ValPair:
    name: str
    trimap_set: str
    image: np.ndarray      # HxWx3 float32 sRGB 0-1
    trimap: np.ndarray     # HxW float32 {0, 0.5, 1}
    alpha: np.ndarray      # HxW float32 ground truth
    prior: np.ndarray      # HxW float32 closed-form alpha (global solve, as inference does)


def cached_prior(image: np.ndarray, trimap: np.ndarray, max_side: int, cache: Path | None,
                 solver: str = "cf", device: str = "cpu") -> np.ndarray:
    """The engine's global prior, kept on disk by a hash of its inputs (a solve costs seconds)."""
    import hashlib

    from ..engine.prior import global_prior
    if cache is None:
        return global_prior(image, trimap, max_side, solver, device)
    key = image.tobytes() + trimap.tobytes() + str(max_side).encode()
    if solver != "cf":      # keeps the names of closed-form priors cached before solvers
        key += solver.encode()
    h = hashlib.sha256(key).hexdigest()[:24]
    path = Path(cache) / f"prior_{h}.npy"
    if path.exists():
        return np.load(path)
    prior = global_prior(image, trimap, max_side, solver, device)
    save_npy_atomic(path, prior)
    return prior


def load_pairs(dataset: Path, names, trimap_sets=("trimap1", "trimap2"), max_side: int = 1024,
               cache: Path | None = None, solver: str = "cf", device: str = "cpu") -> list[ValPair]:
    """Read images, trimaps and ground truth; solve (or reload) their priors."""
    if cache is None:
        from . import data_cache_dir
        cache = data_cache_dir().parent / "valprior"
    pairs = []
    for name in names:
        for ts in trimap_sets:
            image, tri, gt = load_case(dataset, name, ts)
            pairs.append(ValPair(name, ts, image, tri, gt, cached_prior(image, tri, max_side, cache, solver,
                                                                            device)))
    return pairs


def evaluate_engine(engine, pairs: list[ValPair]) -> dict:
    """Mean metrics per trimap set for ``engine`` and for its classical prior alone
    (``"model/trimap1"``, ``"prior/trimap1"``, ...), and each pair's under ``"per_image"``
    (``"GT02/trimap1": {"model": ..., "prior": ...}``), so a checkpoint can be chosen on some
    images and reported on others."""
    rows: dict[tuple[str, str], list[dict]] = {}
    per_image: dict[str, dict] = {}
    t0 = time.time()
    for p in pairs:
        pred = engine.matte(p.image, p.trimap, prior=p.prior)
        model, prior = all_metrics(pred, p.alpha, p.trimap), all_metrics(p.prior, p.alpha, p.trimap)
        rows.setdefault(("model", p.trimap_set), []).append(model)
        rows.setdefault(("prior", p.trimap_set), []).append(prior)
        per_image[f"{p.name}/{p.trimap_set}"] = {"model": model, "prior": prior}
    out: dict[str, object] = {"per_image": per_image}
    for (method, ts), ms in rows.items():
        out[f"{method}/{ts}"] = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
    out["seconds"] = time.time() - t0
    return out
