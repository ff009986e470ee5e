"""High-resolution tiled inference: the engine's public API.

    eng = Engine.load(weights=None, device="auto", patch=320, overlap=32, k=3, pool=30)
    alpha = eng.matte(image, trimap, progress=None, cancel=None)

Memory: besides the input and output arrays (and the prior for variant D, one
more HxW float32) the working set is fixed per frame width: compact context
features (key, value, regions at 1/8) for at most three patch rows plus a
reservoir of ``pool`` patches, and decoder features for two patch rows. Small
frames keep everything (at most ``pool + 1`` patches).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .. import ENGINE_VERSION
from ..errors import Cancelled, TrimapError, WeightsError
from .config import LIGHT, ModelConfig
from .bank import FeatureBank
from .context import score_candidates, select_top_k
from .fold import fold_batchnorm
from .guided import guided_upsample
from .network import HDMattNet, make_input
from .pool import NEIGHBOUR_ROWS, candidates, thin
from .prior import PRIOR_METHODS, compute_prior, downsample
from .regions import max_unknown_cells
from .tiling import PatchGrid, check_settings
from .weights import BUNDLED_WEIGHTS, load_network, verified_sha256

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError(f"device {device!r} requested but CUDA is not available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


# "cascade" (the default): the network on the frame downsampled to prior_max_side (with the
# global classical prior there); its alpha enlarged by guided upsampling (the full-resolution
# plate's colours put back edges the coarse alpha blurred); then the full-resolution pass,
# moved only CASCADE_STEP of the way from that prior to its answer. Trained on classical
# priors, the network over-corrects its own, sharper one: undamped, the full-resolution pass
# loses to the prior it starts from. The step was chosen on high-resolution composites of the
# training images (benchmarks/, mean SAD 19.10 / 18.82 / 19.31 / 22.20 at steps 0, 0.25,
# 0.5, 1). Frames within prior_max_side get the global prior and the whole step.
PRIOR_MODES = PRIOR_METHODS + ("cascade",)
CASCADE_STEP = 0.25


class Engine:
    """A loaded network plus inference settings. Build with :meth:`Engine.load`."""

    def __init__(self, net: HDMattNet, device: torch.device, *, patch=320, overlap=32, k=3, pool=30,
                 precision="auto", prior="auto", prior_max_side=1024, batch=None, context=True,
                 cascade_step=CASCADE_STEP, weights_path: Path | None = None, weights_sha256: str = "",
                 info: dict | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if prior not in ("auto",) + PRIOR_MODES:
            raise ValueError(f"prior must be auto, {', '.join(PRIOR_MODES)}, got {prior!r}")
        if not 0.0 < cascade_step <= 1.0:
            raise ValueError(f"cascade_step must be in (0, 1], got {cascade_step!r}")
        check_settings(patch, overlap, k, pool)
        # a folded copy: the caller's network (e.g. one being trained) stays untouched
        self.net = fold_batchnorm(copy.deepcopy(net).eval()).to(device)
        self.cfg: ModelConfig = net.cfg
        self.device = device
        self.patch, self.overlap, self.k, self.pool = patch, overlap, k, pool
        self.precision = precision
        self.prior = "cascade" if prior == "auto" else prior
        self.prior_max_side = prior_max_side
        self.cascade_step = cascade_step
        self.batch = batch or (16 if device.type == "cuda" else 4)
        self.context = context
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.weights_id = weights_path.stem if weights_path else "untrained-random"
        self.info = info or {}

    @classmethod
    def load(cls, weights=None, device="auto", patch=320, overlap=32, k=3, pool=30,
             precision="auto", prior="auto", batch=None, config: ModelConfig | None = None,
             context=True, cascade_step=CASCADE_STEP, random_init=False) -> "Engine":
        """Load weights (default: the shipped ``nuke_hdmatt/model/hdmatt.safetensors``).

        ``context=False`` runs the same network on plain patches: every query sees
        no context patch (TGNL falls back to the query's own value), the paper's
        ablation of cross-patch context.

        ``random_init=True`` (tests and timings only) loads no file: a randomly initialised
        ``config`` network (default the light configuration, seed 0), ``weights_id``
        "untrained-random"; its alphas are not usable.

        Raises
        ------
        WeightsError
            The weights file is missing (named in the error), damaged or not HDMatt weights.
        """
        dev = resolve_device(device)
        if random_init:
            if weights is not None:
                raise ValueError("random_init=True takes no weights file")
            torch.manual_seed(0)
            path, net, info, sha = None, HDMattNet(config or LIGHT), {}, ""
        else:
            path = Path(weights) if weights else BUNDLED_WEIGHTS
            sha = verified_sha256(path)
            net, info = load_network(path)
        return cls(net, dev, patch=patch, overlap=overlap, k=k, pool=pool, precision=precision,
                   prior=prior, batch=batch, context=context, cascade_step=cascade_step, weights_path=path, weights_sha256=sha, info=info)

    def params(self) -> dict:
        return {"patch": self.patch, "overlap": self.overlap, "k": self.k, "pool": self.pool,
                "precision": self._dtype_name(), "prior": self.prior if self.cfg.uses_prior else "none",
                "prior_max_side": self.prior_max_side, "cascade_step": self.cascade_step,
                "device": self.device.type,
                "variant": self.cfg.variant, "context": self.context,
                "engine_version": ENGINE_VERSION}

    def _dtype_name(self) -> str:
        if self.precision != "auto":
            return self.precision
        return "fp16" if self.device.type == "cuda" else "fp32"

    def _autocast(self):
        name = self._dtype_name()
        if name == "fp32":
            return nullcontext()
        dtype = torch.float16 if name == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------------------
    def matte(self, image: np.ndarray, trimap: np.ndarray, progress=None, cancel=None,
              prior: np.ndarray | None = None) -> np.ndarray:
        """Alpha for one frame.

        image: float32 HxWx3, network input space (sRGB-encoded Rec.709, 0-1).
        trimap: float32 HxW with 0 (background), 0.5 (unknown), 1 (foreground).
        progress(done, total, stage): called per patch ("patches") and per prior solve.
        cancel(): polled between batches; True raises :class:`Cancelled`.
        prior: a precomputed HxW prior alpha for variant D (else computed here).
        Returns float32 HxW in [0, 1]; known trimap pixels are copied exactly.
        """
        image, trimap = _check_inputs(image, trimap)
        alpha = trimap.copy()
        unknown = trimap == 0.5
        if not unknown.any():
            return alpha
        step = 1.0
        if not self.cfg.uses_prior:
            prior = None
        elif prior is not None:
            prior = np.ascontiguousarray(prior, dtype=np.float32)
        else:
            prior, step = self._prior(image, trimap, progress, cancel)
        alpha = self._run(image, trimap, prior, progress, cancel)
        if step != 1.0:
            alpha[unknown] = prior[unknown] + step * (alpha[unknown] - prior[unknown])
        return alpha

    def foreground(self, linear: np.ndarray, alpha: np.ndarray, progress=None,
                   cancel=None) -> np.ndarray:
        """Unpremultiplied foreground colour of a frame, on the engine's device.

        linear: float32 HxWx3, the plate in scene-linear light (not the network's sRGB input:
        the matting equation holds for light). alpha: float32 HxW in [0, 1] (from
        :meth:`matte`). Returns float32 HxWx3 in the same space; see
        :func:`.foreground.estimate_foreground` (progress stage ``"foreground"``).
        """
        from .foreground import estimate_foreground
        return estimate_foreground(linear, alpha, device=self.device, progress=progress,
                                   cancel=cancel)

    def foreground_params(self) -> dict:
        """What decides :meth:`foreground`'s answer besides its inputs (for cache keys)."""
        from . import foreground
        return {"method": "multilevel-redblack", "regularization": foreground.REGULARIZATION,
                "gradient_weight": foreground.GRADIENT_WEIGHT,
                "iterations": [foreground.SMALL_ITERATIONS, foreground.BIG_ITERATIONS],
                "base_side": foreground.BASE_SIDE, "tile": foreground.TILE,
                "margin": foreground.MARGIN, "engine_version": ENGINE_VERSION}

    def _prior(self, image, trimap, progress, cancel):
        """(prior, step): the full-resolution pass moves alpha ``step`` of the way from the
        prior to the network's answer (see CASCADE_STEP)."""
        if self.prior != "cascade":
            return self._classical(image, trimap, self.prior, progress, cancel), 1.0
        small = downsample(image, trimap, self.prior_max_side)
        if small is None:
            return self._classical(image, trimap, "global", cancel=cancel), 1.0
        coarse_progress = None if progress is None else \
            (lambda done, total, stage: progress(done, total, f"coarse {stage}"))
        coarse_prior = self._classical(*small, "global", cancel=cancel)
        coarse = self._run(*small, coarse_prior, coarse_progress, cancel)
        return guided_upsample(coarse, small[0], image, trimap, device=self.device), self.cascade_step

    def _classical(self, image, trimap, method, progress=None, cancel=None):
        """The classical prior; a solve that fails (no convergence on a degenerate frame such
        as a 1-pixel strip) falls back to the trimap-based prior of training (0.5 over the
        unknown region), with a warning: the network still gives an alpha."""
        try:
            return compute_prior(image, trimap, method, self.prior_max_side, self.patch,
                                 self.overlap, progress, cancel, self.cfg.prior_solver, self.device)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            h, w = trimap.shape
            warnings.warn(f"classical prior failed on the {w}x{h} frame "
                          f"({' '.join(str(exc).split())}); using the trimap-based prior",
                          RuntimeWarning, stacklevel=2)
            out = trimap.astype(np.float32).copy()
            out[trimap == 0.5] = 0.5
            return out

    def _run(self, image, trimap, prior, progress, cancel):
        alpha = trimap.copy()
        unknown = trimap == 0.5
        if not unknown.any():
            return alpha
        grid = PatchGrid(*trimap.shape, self.patch, self.overlap)
        queries = [(r, c) for r in range(grid.rows) for c in range(grid.cols)
                   if (grid.extract(trimap, r, c) == 0.5).any()]
        acc = np.zeros(trimap.shape, dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            _Pass(self, grid, image, trimap, prior, queries, acc, progress, cancel).run()
        alpha[unknown] = np.clip(acc[unknown], 0.0, 1.0)
        return alpha


def _check_inputs(image, trimap):
    image = np.asarray(image)
    trimap = np.asarray(trimap)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {image.shape}")
    if trimap.shape != image.shape[:2]:
        raise TrimapError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is "
                          f"{image.shape[1]}x{image.shape[0]}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    trimap = np.ascontiguousarray(trimap, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or inf (the imaging layer must sanitise it)")
    bad = ~np.isin(trimap, (0.0, 0.5, 1.0))
    if bad.any():
        raise TrimapError(f"trimap holds {int(bad.sum())} values other than 0, 0.5 and 1")
    return image, trimap


class _Pass:
    """One frame's streamed pass over the query patches (see runner docstring)."""

    def __init__(self, eng: Engine, grid, image, trimap, prior, queries, acc, progress, cancel):
        self.eng, self.grid, self.acc = eng, grid, acc
        self.image, self.trimap, self.prior = image, trimap, prior
        self.queries, self.progress, self.cancel = queries, progress, cancel
        self.small = len(queries) <= eng.pool + 1
        self.ctx = FeatureBank()  # cell -> compact context features
        self.pending: dict = {}  # patch row -> [(cells, batched decoder features)], until decoded
        self.reservoir: list = []
        self.done = 0

    def _check_cancel(self):
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled")

    def run(self):
        rows = sorted({r for r, _ in self.queries})
        by_row = {r: [q for q in self.queries if q[0] == r] for r in rows}
        if self.small:
            # all queries are candidates of each other: encode them all, decode batch by batch
            self._encode(self.queries, key=-1)
            for cells, feats in self.pending.pop(-1, []):
                self._decode(cells, feats)
            return
        for i, r in enumerate(rows):
            for rr in rows[i:i + 2]:
                if rr not in self.pending:
                    self._encode(by_row[rr], key=rr)
            for cells, feats in self.pending.pop(r):
                self._decode(cells, feats)
            self._retire(rows, i)

    def _retire(self, rows, i):
        """Row i is decoded: cells out of reach of the next query row move to the reservoir."""
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        stale = [cell for cell in self.ctx if nxt is None or cell[0] < nxt - NEIGHBOUR_ROWS]
        for cell in sorted(stale):
            if cell not in self.reservoir:
                self.reservoir.append(cell)
        self.reservoir = thin(self.reservoir, self.eng.pool)
        self.ctx.keep(set(self.reservoir) | {c for c in self.ctx if c not in stale})

    def _inputs(self, cells):
        eng, g = self.eng, self.grid
        img = np.stack([g.extract(self.image, r, c) for r, c in cells])
        tri = np.stack([g.extract(self.trimap, r, c) for r, c in cells])
        t_img = torch.from_numpy(img).permute(0, 3, 1, 2).to(eng.device)
        t_tri = torch.from_numpy(tri)[:, None].to(eng.device)
        t_pri = None
        if self.prior is not None:
            t_pri = torch.from_numpy(np.stack([g.extract(self.prior, r, c) for r, c in cells]))[:, None].to(eng.device)
        return make_input(t_img, t_tri, t_pri, eng.cfg), t_tri, t_pri, max_unknown_cells(tri)

    def _encode(self, cells, key):
        """Encode ``cells`` in batches; keep decoder features batched (no re-stacking)."""
        net, b = self.eng.net, self.eng.batch
        batches = self.pending.setdefault(key, [])
        for s in range(0, len(cells), b):
            self._check_cancel()
            chunk = cells[s:s + b]
            x, tri, pri, max_unknown = self._inputs(chunk)
            feats = net.encode(x)
            ctx = net.context_features(feats, tri)
            self.ctx.add(chunk, ctx)
            feats["x"], feats["prior"], feats["max_unknown"] = x, pri, max_unknown
            batches.append((chunk, feats))

    def _select(self, chunk):
        """Top-K context for each query of ``chunk``: stacked key/value/regions/scores.

        Each distinct candidate's features are stacked once per chunk (queries of a chunk
        share most of their candidates) and gathered by index. Slots left empty (fewer
        valid candidates than K) point at the chunk's first query with zero regions and a
        zero score, so attention gives them exactly zero weight.
        """
        eng = self.eng
        cands = [candidates(q, list(self.ctx), self.reservoir, eng.pool, self.small)
                 if eng.context else [] for q in chunk]
        ids = sorted({c for cs in cands for c in cs})
        row = {c: i for i, c in enumerate(ids)}
        ids.append(chunk[0])
        n = max(1, max(len(c) for c in cands))
        dev = eng.device
        slot = torch.tensor([[row[c] for c in cs] + [len(ids) - 1] * (n - len(cs)) for cs in cands],
                            dtype=torch.long, device=dev)
        lengths = torch.tensor([len(cs) for cs in cands], device=dev)
        valid = torch.arange(n, device=dev)[None, :] < lengths[:, None]
        table = self.ctx.gather(ids, ("desc", "key", "value", "regions"))
        desc = table["desc"].float()[slot] * valid[..., None]
        qdesc = self.ctx.gather(chunk, ("qdesc",))["qdesc"].float()
        idx, scores = select_top_k(score_candidates(qdesc, desc, valid), eng.k)
        ok = valid.gather(1, idx)
        chosen = torch.where(ok, slot.gather(1, idx), len(ids) - 1)
        regions = table["regions"][chosen]
        regions = regions * ok.view(*ok.shape, *([1] * (regions.dim() - 2))).to(regions.dtype)
        scores = torch.where(ok, scores, scores.new_zeros(()))
        scores = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return {"key": table["key"][chosen], "value": table["value"][chosen],
                "regions": regions, "scores": scores}

    def _decode(self, chunk, feats):
        eng, g = self.eng, self.grid
        self._check_cancel()
        q_ctx, c_sel = {}, None
        if eng.cfg.uses_context:
            q_ctx = self.ctx.gather(chunk, ("key", "value", "regions"))
            c_sel = self._select(chunk)
        out = eng.net.decode(feats, q_ctx, c_sel, feats["x"], feats["prior"], feats["max_unknown"])
        out = out[:, 0].float().cpu().numpy()
        for j, (r, c) in enumerate(chunk):
            g.accumulate(self.acc, out[j], r, c)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, len(self.queries), "patches")
