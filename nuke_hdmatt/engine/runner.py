"""High-resolution tiled inference: the engine's public API.

    eng = Engine.load(weights=None, device="auto", patch=320, overlap=32, k=3, pool=30)
    alpha = eng.matte(image, trimap, progress=None, cancel=None)

The prior and the cascade live in :mod:`.cascade`, the network's pass over a frame's
patches in :mod:`.streamed_pass` (its memory bound is stated there).
"""

from __future__ import annotations

import copy
import functools
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from .. import ENGINE_VERSION
from ..errors import TrimapError, WeightsError
from .cascade import classical_prior, prior_and_step
from .config import LIGHT, ModelConfig
from .detail import DetailModel, unknown_tiles
from .fold import fold_batchnorm
from .frame_progress import FrameProgress
from .memory import guarded
from .network import HDMattNet
from .prior import downsample
from .settings import FIXED_DETAIL, InferenceSettings, check_device
from .snap import snap_alpha
from .streamed_pass import PassPlan, StreamedPass, plan_pass
from .weights import BUNDLED_WEIGHTS, load_detail_model, load_network, verified_sha256

__all__ = ["Engine", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


class Engine:
    """A loaded network plus inference settings. Build with :meth:`Engine.load`.

    ``on_stage``: an optional callback ``(stage, seconds)`` told how long each stage of a
    frame took: ``prior`` (classical solve), ``upsample`` (the cascade's guided upsampling),
    ``encode`` (encoder + ASPP), ``cpc`` (key/value embedding and context selection),
    ``decode`` (TGNL + decoder). With it set the engine waits for the device around each
    stage (so the times are true, and the run is slower on a GPU); without it, no clock runs.
    """

    def __init__(self, net: HDMattNet, device: torch.device,
                 settings: InferenceSettings | None = None, *, weights_path: Path | None = None,
                 weights_sha256: str = "", info: dict | None = None, on_stage=None,
                 detail_model: DetailModel | None = None, detail_digest: str = "", **options):
        """``settings`` (default :class:`InferenceSettings`()), with any of its fields given
        as keywords (``patch=64``) replacing them. ``detail_model``: the cascade's per-pixel
        step for ``detail="auto"`` (without one, auto is the fixed step
        :data:`.settings.FIXED_DETAIL`); ``detail_digest`` names it in :meth:`params`."""
        settings = settings or InferenceSettings()
        self.settings = settings.replace(**options) if options else settings
        # a folded copy: the caller's network (e.g. one being trained) stays untouched;
        # channels-last: on 2 CPU threads a batch of 320 px patches encodes 1.2x and
        # decodes 1.6x faster (oneDNN's native layout; 3.2x for the full-resolution max-pool)
        # (Module.to takes memory_format, which torch's type stubs leave out)
        self.net = fold_batchnorm(copy.deepcopy(net).eval()).to(
            device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.cfg: ModelConfig = net.cfg
        self.device = device
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.weights_id = weights_path.stem if weights_path else "untrained-random"
        self.info = info or {}
        self.on_stage = on_stage
        self.detail_model = detail_model
        self.detail_digest = detail_digest if detail_model is not None else ""

    # the settings the engine's parts read, under their own names
    patch = property(lambda self: self.settings.patch)
    overlap = property(lambda self: self.settings.overlap)
    k = property(lambda self: self.settings.k)
    pool = property(lambda self: self.settings.pool)
    precision = property(lambda self: self.settings.precision)
    prior = property(lambda self: self.settings.prior_mode)
    prior_max_side = property(lambda self: self.settings.prior_max_side)

    @property
    def detail(self) -> float | DetailModel:
        """The cascade's step: a number, or the model that predicts it per pixel."""
        d = self.settings.detail
        if d != "auto":
            return float(d)
        return self.detail_model if self.detail_model is not None else FIXED_DETAIL
    context = property(lambda self: self.settings.context)

    @property
    def batch(self) -> int:
        return self.settings.batch or (16 if self.device.type == "cuda" else 4)

    @classmethod
    def load(cls, weights=None, device="auto", settings: InferenceSettings | None = None, *,
             config: ModelConfig | None = None, random_init=False, **options) -> "Engine":
        """Load weights (default: the shipped ``nuke_hdmatt/model/hdmatt.safetensors``) with
        ``settings`` (fields given as keywords replace them, e.g. ``patch=64``; see
        :class:`InferenceSettings`: ``context=False`` is the paper's ablation of cross-patch
        context, every query decoded without context patches).

        ``random_init=True`` (tests and timings only) loads no file: a randomly initialised
        ``config`` network (default the light configuration, seed 0), ``weights_id``
        "untrained-random"; its alphas are not usable.

        Raises
        ------
        WeightsError
            The weights file is missing (named in the error), damaged or not HDMatt weights.
        ValueError
            A setting out of its range (named as its command-line option).
        """
        settings = settings or InferenceSettings()
        settings = settings.replace(**options) if options else settings     # checked first
        dev = resolve_device(device)
        if random_init:
            if weights is not None:
                raise ValueError("random_init=True takes no weights file")
            torch.manual_seed(0)
            path, net, info, sha = None, HDMattNet(config or LIGHT), {}, ""
            detail, digest = None, ""
        else:
            path = Path(weights) if weights else BUNDLED_WEIGHTS
            sha = verified_sha256(path)
            net, info = load_network(path)
            detail, digest = load_detail_model(path, sha)
        return cls(net, dev, settings, weights_path=path, weights_sha256=sha, info=info,
                   detail_model=detail, detail_digest=digest)

    def params(self, shape: tuple[int, int] | None = None) -> dict:
        """What decides the alpha besides the inputs and the weights (cache keys, stamps).
        For a frame of ``shape`` (H, W): only what decides that frame's, so a frame within
        ``prior_max_side`` says the global prior it gets under the cascade and no detail
        step (none is taken there, nor with any prior but the cascade), and changing those
        does not miss its cache entry."""
        s = self.settings
        out = {"patch": s.patch, "overlap": s.overlap, "k": s.k, "pool": s.pool,
               "precision": self._dtype_name(),
               "prior": s.prior_mode if self.cfg.uses_prior else "none",
               "prior_max_side": s.prior_max_side, "detail": self._detail_name(),
               "device": self.device.type, "variant": self.cfg.variant, "context": s.context,
               "flip": s.flip, "snap": s.snap,
               "engine_version": ENGINE_VERSION}
        if shape is not None and max(shape) <= s.prior_max_side and out["prior"] == "cascade":
            out["prior"] = "global"
        if out["prior"] != "cascade":  # the detail step is the cascade's alone
            del out["detail"]
        return out

    def _detail_name(self) -> float | str:
        """The step for the record: a number, or ``auto:<digest>`` of the detail model."""
        step = self.detail
        return step if isinstance(step, float) else f"auto:{self.detail_digest[:12]}"

    def _dtype_name(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self.device.type == "cuda":
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"

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
        progress(done, total, stage): called per batch of patches and per local prior
        solve, one count over the frame's parts (:mod:`.frame_progress`; stages ``prior``,
        ``coarse patches``, ``patches``, ``detail``): done only grows, total stays fixed.
        cancel(): polled between batches; True raises :class:`Cancelled`.
        prior: a precomputed HxW prior alpha for variant D (else computed here).
        Returns float32 HxW in [0, 1]; known trimap pixels are copied exactly, unknown ones
        within the settings' ``snap`` of 0 or 1 are exactly 0 or 1 (:mod:`.snap`).
        Out of memory: see :mod:`.memory` (one retry on a GPU, then
        :class:`~nuke_hdmatt.errors.OutOfMemory`).
        """
        image, trimap = _check_inputs(image, trimap)
        alpha = guarded(self.device, f"a {image.shape[1]}x{image.shape[0]} frame",
                        lambda: self._matte(image, trimap, progress, cancel, prior))
        return snap_alpha(alpha, trimap == 0.5, self.settings.snap)

    def _matte(self, image, trimap, progress, cancel, prior):
        unknown = trimap == 0.5
        if not unknown.any():
            return trimap.copy()
        step: float | DetailModel = 1.0
        small = None
        if not self.cfg.uses_prior:
            prior = None
        elif prior is not None:
            prior = np.asarray(prior)
            if prior.shape != trimap.shape:
                raise ValueError(f"prior is {prior.shape}, the trimap {trimap.shape}")
            # a NaN would spread over every unknown pixel its patches reach
            prior = np.clip(np.nan_to_num(prior.astype(np.float32), nan=0.5), 0.0, 1.0)
        elif self.prior == "cascade":
            small = downsample(image, trimap, self.prior_max_side)
        # each network pass's cells, counted once: for the progress plan and for the pass
        coarse = self._pass_plans(small[1]) if small is not None else []
        full = [] if coarse and self.detail == 0.0 else self._pass_plans(trimap)
        frame = FrameProgress(progress, self._parts(trimap, prior is None, coarse, full))
        if self.cfg.uses_prior and prior is None:
            prior, step = prior_and_step(self, image, trimap, frame, cancel, small, coarse)
        if isinstance(step, float) and step == 0.0:
            # detail 0: the enlarged coarse alpha, no full-resolution pass
            assert prior is not None
            alpha = trimap.copy()
            alpha[unknown] = prior[unknown]
            return alpha
        alpha = self._network(image, trimap, prior, frame, cancel, plans=full)
        if isinstance(step, DetailModel):
            assert prior is not None
            with self.stage("detail"):
                return step.blend(image, trimap, prior, alpha, self.device, cancel,
                                  frame.part("detail"))
        if step != 1.0:
            assert prior is not None and isinstance(step, float)
            alpha[unknown] = prior[unknown] + step * (alpha[unknown] - prior[unknown])
        return alpha

    def _parts(self, trimap, solves_prior: bool, coarse: list[PassPlan],
               full: list[PassPlan]) -> list[tuple[str, int]]:
        """The frame's parts for :class:`.frame_progress.FrameProgress`, in the order
        :meth:`_matte` runs them: the local prior's cells (the full-resolution queries), the
        cascade's ``coarse`` passes, then the ``full``-resolution ones (none with
        ``detail`` 0)."""
        big = max(trimap.shape) > self.prior_max_side
        local = solves_prior and self.cfg.uses_prior and self.prior == "local" and big
        # the detail model's tiles after the full-resolution pass: 2-3 s of a 6K CPU frame,
        # which a bar at 100 % would leave unexplained
        detail = [("detail", len(unknown_tiles(trimap, self.device)))] \
            if coarse and full and isinstance(self.detail, DetailModel) else []
        return ([("prior", len(full[0].queries))] if local else []) + \
            [("coarse patches", p.steps) for p in coarse] + \
            [("patches", p.steps) for p in full] + detail

    def _pass_plans(self, trimap) -> list[PassPlan]:
        """The plan of each of :meth:`_network`'s passes on ``trimap`` (two with flips)."""
        flips = [trimap, trimap[:, ::-1]] if self._flips(trimap) else [trimap]
        return [plan_pass(self, t) for t in flips]

    def _flips(self, trimap) -> bool:
        return self.settings.flip and max(trimap.shape) <= self.prior_max_side

    def foreground(self, linear: np.ndarray, alpha: np.ndarray, progress=None,
                   cancel=None) -> np.ndarray:
        """Unpremultiplied foreground colour of a frame, on the engine's device.

        linear: float32 HxWx3, the plate in scene-linear light (not the network's sRGB input:
        the matting equation holds for light). alpha: float32 HxW in [0, 1] (from
        :meth:`matte`). Returns float32 HxWx3 in the same space; see
        :func:`.foreground.estimate_foreground` (progress stage ``"foreground"``).
        """
        from .foreground import estimate_foreground
        return guarded(self.device, f"the foreground of a {alpha.shape[1]}x{alpha.shape[0]} "
                       "frame", lambda: estimate_foreground(linear, alpha, device=self.device,
                                                            progress=progress, cancel=cancel))

    def foreground_params(self) -> dict:
        """What decides :meth:`foreground`'s answer besides its inputs (for cache keys)."""
        from . import foreground
        return {"method": "multilevel-redblack", "regularization": foreground.REGULARIZATION,
                "gradient_weight": foreground.GRADIENT_WEIGHT,
                "iterations": [foreground.SMALL_ITERATIONS, foreground.BIG_ITERATIONS],
                "base_side": foreground.BASE_SIDE, "tile": foreground.TILE,
                "margin": foreground.MARGIN, "engine_version": ENGINE_VERSION}

    def _prior(self, image, trimap, progress, cancel):
        """(prior, step): see :func:`.cascade.prior_and_step` (for benchmarks that keep the
        cascade's parts; ``progress`` hears nothing, no frame being planned)."""
        return prior_and_step(self, image, trimap, FrameProgress(progress, []), cancel)

    def _classical(self, image, trimap, method, progress=None, cancel=None):
        return classical_prior(self, image, trimap, method, progress, cancel)

    @contextmanager
    def stage(self, name: str):
        """Time the enclosed work as stage ``name`` for :attr:`on_stage` (if set)."""
        hook = self.on_stage
        if hook is None:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            hook(name, time.perf_counter() - t0)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _network(self, image, trimap, prior, frame: FrameProgress, cancel,
                 stage: str = "patches", plans: list[PassPlan] | None = None):
        """The network's alpha of the frame; with ``flip`` on a frame within
        ``prior_max_side``, the mean of it and of the mirrored frame's, mirrored back
        (docs/ENGINE.md, "Flip averaging"). Each pass reports as ``frame``'s next part of
        ``stage``; ``plans``: :meth:`_pass_plans` of the frame, when already made."""
        plans = plans or self._pass_plans(trimap)
        if len(plans) == 1:
            return self._run(image, trimap, prior, frame.part(stage), cancel, plans[0])

        def mirror(a):
            # a copy, not ascontiguousarray: a 1-pixel-wide frame's reversed view counts as
            # contiguous, negative stride and all, and torch refuses negative strides
            return None if a is None else a[:, ::-1].copy()
        alpha = self._run(image, trimap, prior, frame.part(stage), cancel, plans[0])
        alpha += self._run(mirror(image), mirror(trimap), mirror(prior), frame.part(stage),
                           cancel, plans[1])[:, ::-1]
        return alpha * np.float32(0.5)

    def _run(self, image, trimap, prior, progress, cancel, plan: PassPlan | None = None):
        alpha = trimap.copy()
        unknown = trimap == 0.5
        if not unknown.any():
            return alpha
        plan = plan or plan_pass(self, trimap)
        with torch.inference_mode(), self._autocast():
            acc = torch.zeros(trimap.shape, dtype=torch.float32, device=self.device)
            StreamedPass(self, plan, image, trimap, prior, acc, progress, cancel).run()
            blended = acc.cpu().numpy()    # the pass's only download
        alpha[unknown] = np.clip(blended[unknown], 0.0, 1.0)
        return alpha


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so oneDNN's bf16
    convolutions beat float32 (2 threads of a Xeon with AMX: the encoder 3x, a 6K frame
    22.5 -> 16.1 s; emulated bf16 is slower than float32). torch's probe is private: a torch
    without it means no."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe is not None and probe())


def _check_inputs(image, trimap):
    image = np.asarray(image)
    trimap = np.asarray(trimap)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):   # 8-bit codes would read as all white
        raise ValueError(f"image must be float in 0-1, got {image.dtype}")
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
