"""The matting methods the benchmarks compare, run the same way by every script.

A method is a small JSON-able dict (so a child process can be told which one to run):

    {"label": "HDMatt-D", "kind": "hdmatt", "weights": "nuke_hdmatt/model/hdmatt.safetensors",
     "context": True, "prior": "global", "patch": 320, "overlap": 32, "downsample": None}
    {"label": "closed-form", "kind": "cf"}        # also "knn", "lkm" (PyMatting)

``downsample`` (long side in px) wraps any method: area-downscale the image and trimap, run,
upsample the alpha bilinearly, put the known trimap pixels back.

Peak memory is measured per method in a fresh child process (:func:`run_isolated`):
``tracemalloc`` does not see torch's or numpy's native allocations, while the kernel's RSS
high-water mark does. After loading inputs and a warm-up call the child resets that mark
(:func:`reset_peak_rss`) and records its resident size as ``base_rss_mib`` (inputs,
libraries); ``peak_rss_mib`` is the mark at the end, so ``peak - base`` is the method's own
working set.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import REPO

PYMATTING_KINDS = ("cf", "knn", "lkm")
WORKER = "benchmarks.method_worker"  # run as a module: the package imports its siblings


def found_weights(model_dir: Path = REPO / "nuke_hdmatt" / "model") -> list[Path]:
    """Every ``nuke_hdmatt/model/hdmatt*.safetensors`` (the shipped default first)."""
    paths = sorted(Path(p) for p in glob.glob(str(model_dir / "hdmatt*.safetensors")))
    return sorted(paths, key=lambda p: (p.name != "hdmatt.safetensors", p.name))


def add_weights_argument(ap) -> None:
    ap.add_argument("--weights", nargs="*", type=Path,
                    help="weights files to benchmark (default: every "
                         "nuke_hdmatt/model/hdmatt*.safetensors)")


def chosen_weights(args) -> list[Path]:
    """``--weights`` if given (missing files are an error), else :func:`found_weights`."""
    if args.weights:
        missing = [str(p) for p in args.weights if not p.exists()]
        if missing:
            raise SystemExit(f"weights file not found: {', '.join(missing)}")
        return list(args.weights)
    return found_weights()


def describe_weights(path: Path) -> str:
    """Path (relative to the repository when inside it), variant and sha256 prefix."""
    from nuke_hdmatt.engine.weights import file_sha256
    path = Path(path).resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return f"`{shown}` (variant {weights_variant(path)}, sha256 {file_sha256(path)[:12]})"


def hdmatt_spec(weights: Path | None, label: str | None = None, **kw) -> dict:
    """Method dict for our engine; ``weights=None`` means an untrained light variant-D net
    (timing only: its alphas are meaningless, labels say so)."""
    spec = {"kind": "hdmatt", "weights": str(weights) if weights else None, "context": True,
            "prior": "auto", "patch": 320, "overlap": 32, "downsample": None,
            "variant": None if weights else "D"}
    spec.update(kw)
    spec["label"] = label or hdmatt_label(spec)
    return spec


def weights_config(path: Path):
    """The ModelConfig stored in a weights file's header (no tensors are read)."""
    from nuke_hdmatt.engine.config import ModelConfig
    from nuke_hdmatt.engine.weights import read_header
    return ModelConfig.from_json(read_header(path)["config"])


def weights_variant(path: Path) -> str:
    return weights_config(path).variant


def weights_prior_solver(path: Path) -> str:
    return weights_config(path).prior_solver


def hdmatt_label(spec: dict) -> str:
    if spec["weights"]:
        variant = weights_variant(Path(spec["weights"]))
        name = f"HDMatt-{variant} ({Path(spec['weights']).stem})"
    else:
        name = f"HDMatt-{spec['variant']} (UNTRAINED)"
    return name


def pymatting_spec(kind: str, **kw) -> dict:
    names = {"cf": "closed-form", "knn": "KNN", "lkm": "LKM"}
    spec = {"kind": kind, "label": names[kind], "downsample": None}
    spec.update(kw)
    return spec


# ---------------------------------------------------------------------------------------
_ENGINES: dict = {}


def load_engine(spec: dict):
    key = json.dumps({k: spec.get(k) for k in ("weights", "context", "prior", "patch", "overlap",
                                               "variant", "device", "detail", "flip")},
                     sort_keys=True)
    if key not in _ENGINES:
        from nuke_hdmatt.engine import Engine
        from nuke_hdmatt.engine.config import LIGHT
        kw = dict(patch=spec["patch"], overlap=spec["overlap"], prior=spec["prior"],
                  context=spec["context"])
        for name in ("detail", "flip"):
            if spec.get(name) is not None:
                kw[name] = spec[name]
        device = spec.get("device", "cpu")
        if spec["weights"]:
            _ENGINES[key] = Engine.load(weights=spec["weights"], device=device, **kw)
        else:
            _ENGINES[key] = Engine.load(random_init=True, device=device, **kw,
                                        config=LIGHT.replace(variant=spec.get("variant") or "D"))
    return _ENGINES[key]


def _downsampled(spec: dict, image, trimap, stages):
    from nuke_hdmatt.training.resampling import reduce_blocks, resize
    from nuke_hdmatt.trimap_snap import RESAMPLED_TOLERANCE, snap
    h, w = trimap.shape
    side = spec["downsample"]
    scale = side / max(h, w)
    if scale >= 1:
        return run_method({**spec, "downsample": None}, image, trimap, stages)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    t0 = time.perf_counter()
    # Block-average first: the exact area resize is O(h*H*W) and meant for ~2K inputs.
    factor = max(1, int(1 / scale) // 2)
    small_img = resize(reduce_blocks(image, factor), sh, sw)
    # A cell keeps F/B only if it was entirely F/B (same rule as the engine's global prior).
    small_tri = snap(resize(reduce_blocks(trimap, factor), sh, sw), RESAMPLED_TOLERANCE)
    stages["resample"] = stages.get("resample", 0.0) + time.perf_counter() - t0
    small = run_method({**spec, "downsample": None}, small_img, small_tri, stages)
    t0 = time.perf_counter()
    if spec.get("upsample") == "guided":
        from nuke_hdmatt.engine.guided import guided_upsample
        alpha = guided_upsample(small, small_img, image, trimap)
    else:
        alpha = resize(small, h, w)
    known = trimap != 0.5
    alpha[known] = trimap[known]
    stages["resample"] += time.perf_counter() - t0
    return np.clip(alpha, 0, 1).astype(np.float32)


def run_method(spec: dict, image: np.ndarray, trimap: np.ndarray, stages: dict | None = None,
               prior: np.ndarray | None = None) -> np.ndarray:
    """Alpha float32 HxW in [0, 1] for image float32 HxWx3 (sRGB 0-1) and trimap {0,.5,1}.

    ``stages`` (if given) receives seconds per stage of our engine (see :class:`StageClock`).
    """
    stages = {} if stages is None else stages
    if spec.get("downsample"):
        return _downsampled(spec, image, trimap, stages)
    if spec["kind"] == "hdmatt":
        eng = load_engine(spec)
        # the query patches of the full-resolution pass (both of them with flip averaging)
        stages["patches_run"] = sum(len(p.queries) for p in eng._pass_plans(trimap))
        with StageClock(eng, stages):
            return eng.matte(image, trimap, prior=prior)
    if spec["kind"] == "whole":
        return whole_image(load_engine(spec), image, trimap, stages, prior)
    if spec["kind"] in PYMATTING_KINDS:
        import pymatting
        fn = {"cf": pymatting.estimate_alpha_cf, "knn": pymatting.estimate_alpha_knn,
              "lkm": pymatting.estimate_alpha_lkm}[spec["kind"]]
        t0 = time.perf_counter()
        alpha = fn(np.ascontiguousarray(image, np.float64), np.ascontiguousarray(trimap, np.float64))
        stages["solve"] = stages.get("solve", 0.0) + time.perf_counter() - t0
        alpha = np.clip(np.nan_to_num(alpha, nan=0.5), 0, 1).astype(np.float32)
        known = trimap != 0.5
        alpha[known] = trimap[known]
        return alpha
    if spec["kind"] == "prior":
        from nuke_hdmatt.engine.prior import compute_prior
        t0 = time.perf_counter()
        alpha = compute_prior(image, trimap, spec["prior"], spec.get("max_side", 1024),
                              spec.get("patch", 320), spec.get("overlap", 32),
                              solver=spec.get("solver", "cf"))
        stages["prior"] = stages.get("prior", 0.0) + time.perf_counter() - t0
        return alpha
    raise ValueError(f"unknown method kind {spec['kind']!r}")


def whole_image(eng, image: np.ndarray, trimap: np.ndarray, stages: dict,
                prior: np.ndarray | None = None) -> np.ndarray:
    """The engine's network on the whole frame as one patch (reflect-padded to a multiple of
    8, no tiling, no context: a lone patch has no other patch to take context from, so the
    engine's own fallback is mirrored: the query's own value, zero context weight).

    This is what a whole-image network would do, at the frame's own aspect ratio (an
    Engine with one square patch of the long side would pad a 16:9 frame to 1.8x its pixels).
    """
    import torch

    from nuke_hdmatt.engine.network import make_input
    from nuke_hdmatt.engine.tiling import reflect_indices
    h, w = trimap.shape
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    ys, xs = reflect_indices(0, ph, h), reflect_indices(0, pw, w)
    if eng.cfg.uses_prior and prior is None:
        from nuke_hdmatt.engine.prior import PRIOR_METHODS, compute_prior
        # the cascade prior is itself a tiled engine pass: the whole-image baseline takes the
        # closed-form prior it starts from
        method = eng.prior if eng.prior in PRIOR_METHODS else "global"
        t0 = time.perf_counter()
        prior = compute_prior(image, trimap, method, eng.prior_max_side, eng.patch, eng.overlap,
                              solver=eng.cfg.prior_solver)
        stages["prior"] = stages.get("prior", 0.0) + time.perf_counter() - t0
    pad = lambda a: np.ascontiguousarray(a[ys[:, None], xs[None, :]])
    t_img = torch.from_numpy(pad(image)).permute(2, 0, 1)[None].to(eng.device)
    t_tri = torch.from_numpy(pad(trimap))[None, None].to(eng.device)
    t_pri = None if not eng.cfg.uses_prior else torch.from_numpy(pad(prior))[None, None].to(eng.device)
    with torch.inference_mode(), eng._autocast(), StageClock(eng, stages) as clock:
        x = make_input(t_img, t_tri, t_pri, eng.cfg)
        with clock.stage("encode"):
            feats = eng.net.encode(x)
        with clock.stage("cpc"):
            q_ctx = eng.net.context_features(feats, t_tri)
        c_sel = None
        if eng.cfg.uses_context:
            c_sel = {"key": q_ctx["key"][:, None], "value": q_ctx["value"][:, None],
                     "regions": torch.zeros_like(q_ctx["regions"])[:, None],
                     "scores": q_ctx["key"].new_zeros((1, 1))}
        with clock.stage("decode"):
            out = eng.net.decode(feats, q_ctx, c_sel, x, t_pri)
        out = out[0, 0, :h, :w].float().cpu().numpy()
    alpha = trimap.copy()
    unknown = trimap == 0.5
    alpha[unknown] = np.clip(out[unknown], 0.0, 1.0)
    stages["patches_run"] = 1
    from nuke_hdmatt.engine.snap import snap_alpha
    return snap_alpha(alpha, unknown, eng.settings.snap)     # as the engine finishes


def warm_up(spec: dict) -> None:
    """Run once on a tiny frame so numba compilation and torch's first-call setup are not
    timed (each PyMatting solver JIT-compiles on its first call)."""
    rng = np.random.default_rng(0)
    img = rng.random((48, 48, 3), dtype=np.float32)
    tri = np.zeros((48, 48), np.float32)
    tri[16:32] = 0.5
    tri[32:] = 1.0
    run_method({**spec, "downsample": None}, img, tri)


class StageClock:
    """Times our engine's stages for one ``matte`` through the engine's ``on_stage`` hook.

    Stages: ``prior`` (classical solve, variant D), ``upsample`` (the cascade's guided
    upsampling), ``encode`` (encoder + ASPP), ``cpc`` (key/value embedding and context-patch
    selection), ``tgnl`` (non-local attention over the selected context), ``decode``
    (decoder, without TGNL). The engine reports ``decode`` with TGNL inside; TGNL is split
    out by timing the network module's public ``context_attention`` (wrapped for this
    process only, removed on exit). The caller computes ``other`` = wall - sum (patch
    extraction, stitching, bookkeeping). :meth:`stage` times code that calls the network
    directly (the whole-image method).
    """

    def __init__(self, eng, stages: dict):
        self.eng, self.stages = eng, stages
        self._saved_hook = None
        self._saved_attention = None

    def _add(self, stage: str, seconds: float):
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def stage(self, name: str):
        """Inside the clock: the engine's own timer, reporting to this clock."""
        return self.eng.stage(name)

    def __enter__(self):
        from nuke_hdmatt.engine import network
        self._saved_hook = self.eng.on_stage
        self.eng.on_stage = self._add
        self._saved_attention = network.context_attention
        original, clock = network.context_attention, self

        def timed(*args, **kwargs):
            with clock.stage("tgnl"):
                return original(*args, **kwargs)
        network.context_attention = timed
        return self

    def __exit__(self, *exc):
        from nuke_hdmatt.engine import network
        network.context_attention = self._saved_attention
        self.eng.on_stage = self._saved_hook
        if "decode" in self.stages:
            self.stages["decode"] -= self.stages.get("tgnl", 0.0)
        return False


# ---------------------------------------------------------------------------------------
def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_now_mib() -> float:
    now = _status_mib("VmRSS")
    return now if now is not None else peak_rss_mib()


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0:
    ``/proc/self/clear_refs`` value 5), so imports and numba's JIT compilation, which peak
    above many solves, do not mask the method's own peak. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """This process's RSS high-water mark in MiB (``VmHWM``, else ``ru_maxrss``)."""
    hwm = _status_mib("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_isolated(spec: dict, image: np.ndarray, trimap: np.ndarray, threads: int,
                 timeout: float = 3600, prior: np.ndarray | None = None) -> tuple[np.ndarray | None, dict]:
    """Run one method in a fresh process; returns (alpha or None on failure, stats).

    stats: wall_s, peak_rss_mib, base_rss_mib, stages{...}, error (on failure).
    """
    with tempfile.TemporaryDirectory(prefix="hdmatt-bench-", dir=_scratch_dir()) as tmp:
        tmp = Path(tmp)
        np.save(tmp / "image.npy", image)
        np.save(tmp / "trimap.npy", trimap)
        if prior is not None:
            np.save(tmp / "prior.npy", prior)
        cmd = [sys.executable, "-m", WORKER, "--spec", json.dumps(spec), "--dir", str(tmp),
               "--threads", str(threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None, {"error": f"timed out after {timeout:.0f} s"}
        stats_path = tmp / "stats.json"
        if proc.returncode != 0 or not stats_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else tail[0]
            return None, {"error": f"exit {proc.returncode}: {reason}"}
        stats = json.loads(stats_path.read_text())
        return np.load(tmp / "alpha.npy"), stats


def _scratch_dir() -> str:
    path = REPO / ".cache" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
