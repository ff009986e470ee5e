"""Classical alpha prior for variant D: closed-form matting, shared matting, or the mean of
several solvers (``solver="cf+sm"``), as the weights' configuration names.

``cf`` and ``sm`` are torch ports of PyMatting's ``estimate_alpha_cf`` and
``estimate_alpha_sm`` (:mod:`.closed_form`, :mod:`.shared_matting`), run on the engine's
device: nothing compiles at first use and the solve can be cancelled between iterations.
They reproduce PyMatting's alphas (mean abs difference over the unknown pixels of the
alphamatting dev images: ``benchmarks/prior_ports.py``), so weights trained on PyMatting's
priors see the prior they were trained on. The other names (``knn``, ``lbdm``, ``rw``) still
call PyMatting, which is an optional extra (``pip install nuke_hdmatt[bench]``).

Closed-form matting on a whole 6K frame does not fit in 24 GiB, so two bounded
ways are offered:

* ``global``: solve on the frame downsampled so its long side is at most
  ``max_side`` (default 1024), then upsample bilinearly. Memory and time are
  fixed whatever the frame size; fine hair detail below the downsampled pixel
  size is lost (the network restores it).
* ``local``: solve each patch that holds unknown pixels (with the patch's
  reflective padding), blended with the same weights as the network's patches.
  Keeps full-resolution detail; cost grows with the number of unknown patches,
  and a patch that lacks foreground or background pixels to anchor the solve
  gets the one-sided colour prior (:func:`one_sided_prior`; 0.5 with no known pixel).

Frames no larger than ``max_side`` are solved whole at full resolution by both.

The engine adds a third prior, ``cascade`` (see :mod:`.cascade`): the network itself run on
the ``global`` downsampled frame, its alpha upsampled as the full-resolution prior.
"""

from __future__ import annotations

import numpy as np

from ..trimap_snap import RESAMPLED_TOLERANCE, snap
from .config import prior_solver_names
from .settings import PRIOR_METHODS
from .tiling import PatchGrid

TORCH_SOLVERS = ("cf", "sm")


def _pymatting_solver(name: str):
    try:
        import pymatting  # imported lazily: numba compiles on first import
    except ImportError:
        raise ValueError(f"prior solver {name!r} needs PyMatting, an optional extra "
                         "(pip install 'nuke_hdmatt[bench]'); cf and sm need nothing") from None
    return getattr(pymatting, f"estimate_alpha_{name}")


def _solve_one(name: str, image: np.ndarray, trimap: np.ndarray, device, cancel) -> np.ndarray:
    import torch

    if name not in TORCH_SOLVERS:
        # numba's OpenMP pool, started after torch has used OpenMP, changes the thread count
        # of the runtime both share: torch would run the rest of the process (the network, the
        # foreground) on other threads than its caller gave it (benchmarks/RESULTS.md,
        # foreground: 4.7-13x the CPU time on a busy 2-core machine)
        threads = torch.get_num_threads()
        try:
            fn = _pymatting_solver(name)
            return fn(np.ascontiguousarray(image, dtype=np.float64),
                      np.ascontiguousarray(trimap, dtype=np.float64))
        finally:
            torch.set_num_threads(threads)
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    tri = torch.from_numpy(np.ascontiguousarray(trimap, dtype=np.float32)).to(device)
    # The solve uses the threads torch is given (the caller's choice; measured: docs/ENGINE.md,
    # "Threads").
    with torch.inference_mode():
        if name == "cf":
            from .closed_form import RTOL
            from .closed_form import solve as solve_cf
            alpha, rel = solve_cf(img.permute(2, 0, 1).contiguous(), tri, cancel=cancel)
            if rel > 10 * RTOL:      # its last iterate is still used: warn, never raise
                import warnings
                warnings.warn(f"closed-form prior stopped short of convergence on the "
                              f"{tri.shape[1]}x{tri.shape[0]} frame (relative residual "
                              f"{rel:.1e})", RuntimeWarning, stacklevel=2)
        else:
            from .shared_matting import estimate_alpha_sm
            alpha = estimate_alpha_sm(img, tri, cancel)
        return alpha.cpu().numpy()


def solve(image: np.ndarray, trimap: np.ndarray, solver: str = "cf", device="cpu",
          cancel=None) -> np.ndarray:
    """Classical alpha for an HxWx3 float image (0-1) and HxW trimap -> HxW float32.

    ``solver`` names solvers joined by "+"; their alphas are averaged (the solvers err in
    different places: on the 13 training dev images closed-form + shared matting has the SAD
    of the best single solver and lower MSE and Grad than any; ``benchmarks/prior_solvers.py``).
    Known pixels equal the trimap. ``cancel()`` is polled between solver iterations (True
    raises :class:`~nuke_hdmatt.errors.Cancelled`); a solve that does not converge returns
    its last iterate.
    """
    names = prior_solver_names(solver)
    unknown = trimap == 0.5
    if not unknown.any():
        return trimap.astype(np.float32)
    if not ((trimap == 1.0).any() and (trimap == 0.0).any()):
        # the solve needs both known regions (PyMatting raises otherwise)
        return one_sided_prior(image, trimap)
    # resampling can overshoot 1 by an ulp; PyMatting warns about any value outside [0, 1]
    image = np.clip(image, 0.0, 1.0)
    alphas, failed = [], []
    for n in names:  # one solver failing (closed-form on a strip under 3 px) leaves the others
        try:
            alphas.append(np.clip(np.nan_to_num(_solve_one(n, image, trimap, device, cancel),
                                                nan=0.5), 0.0, 1.0))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            failed.append(exc)
    if not alphas:
        raise failed[0]
    alpha = np.mean(alphas, axis=0).astype(np.float32)
    alpha[~unknown] = trimap[~unknown]
    return alpha


#: colour distance (network space, 0-1 per channel) from the known region's colours at
#: which :func:`one_sided_prior` reaches the other side, by the side that is known; ``None``:
#: 0.5, the old rule. Foreground only, 0.03: chosen among 0.01-0.1 on the 13 training dev
#: photos with their trimap1's background made unknown; background only, 0.3: chosen over
#: 0.03 on those photos with the foreground unknown and on see-through scenes of a seed of
#: their own (docs/ENGINE.md, "A trimap of one known region")
ONE_SIDED_REACH: dict[float, float] | None = {1.0: 0.03, 0.0: 0.3}
ONE_SIDED_SAMPLES = 2048


def one_sided_prior(image: np.ndarray, trimap: np.ndarray,
                    reach: float | None = None) -> np.ndarray:
    """The prior of a trimap with one known region (no classical solve exists): an unknown
    pixel is that region's the nearer its colour is to one of the region's colours, the
    other side's at ``reach`` (default :data:`ONE_SIDED_REACH` of the known side) or
    further; 0.5 without any known pixel."""
    out = trimap.astype(np.float32)
    unknown = trimap == 0.5
    side = 1.0 if (trimap == 1.0).any() else 0.0
    if reach is None and ONE_SIDED_REACH is not None:
        reach = ONE_SIDED_REACH[side]
    known = image[trimap == side]
    if reach is None or not len(known):
        out[unknown] = 0.5
        return out
    import torch
    step = max(1, len(known) // ONE_SIDED_SAMPLES)
    samples = torch.from_numpy(np.ascontiguousarray(known[::step], dtype=np.float32))
    pixels = torch.from_numpy(np.ascontiguousarray(image[unknown], dtype=np.float32))
    near = torch.cat([torch.cdist(chunk, samples).amin(dim=1)
                      for chunk in torch.split(pixels, 8192)]).numpy()   # 64 MB a chunk
    other = np.clip(near / reach, 0.0, 1.0)       # 0: a known colour, 1: far from all
    out[unknown] = other if side == 0.0 else 1.0 - other
    return out


def _resize(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(t, size=(height, width), mode=mode, **kw)[0]
    return (out.permute(1, 2, 0) if array.ndim == 3 else out[0]).numpy()


def downsample(image: np.ndarray, trimap: np.ndarray,
               max_side: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(image, trimap) area-resampled to a long side of ``max_side``, the trimap snapped;
    None when the frame is no larger."""
    h, w = trimap.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return None
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    return _resize(image, sh, sw, "area"), snap(_resize(trimap, sh, sw, "area"), RESAMPLED_TOLERANCE)


def upsample(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """A small alpha enlarged bilinearly to the trimap's size; known pixels from the trimap."""
    height, width = trimap.shape
    out = _resize(alpha, height, width, "bilinear")
    known = trimap != 0.5
    out[known] = trimap[known]
    return np.clip(out, 0, 1).astype(np.float32)


def global_prior(image: np.ndarray, trimap: np.ndarray, max_side: int = 1024,
                 solver: str = "cf", device="cpu", cancel=None) -> np.ndarray:
    """Classical alpha solved at a long side of at most ``max_side``, upsampled to HxW.

    image float32 HxWx3 sRGB-encoded 0-1; trimap float32 HxW {0, 0.5, 1};
    returns float32 HxW in [0, 1] with known pixels equal to the trimap.
    """
    small = downsample(image, trimap, max_side)
    if small is None:
        return solve(image, trimap, solver, device, cancel)
    return upsample(solve(*small, solver, device, cancel), trimap)


def local_prior(image: np.ndarray, trimap: np.ndarray, patch: int = 320, overlap: int = 32,
                max_side: int = 1024, progress=None, cancel=None, solver: str = "cf",
                device="cpu") -> np.ndarray:
    """Classical alpha solved per patch over the engine's patch grid and blended."""
    h, w = trimap.shape
    if max(h, w) <= max_side:
        return solve(image, trimap, solver, device, cancel)
    grid = PatchGrid(h, w, patch, overlap)
    out = trimap.astype(np.float32)
    unknown = trimap == 0.5
    out[unknown] = 0.0
    cells = [(r, c) for r in range(grid.rows) for c in range(grid.cols)
             if (grid.extract(trimap, r, c) == 0.5).any()]
    acc = np.zeros((h, w), dtype=np.float32)
    for i, (r, c) in enumerate(cells):
        if cancel is not None and cancel():
            from ..errors import Cancelled
            raise Cancelled("cancelled during the prior solve")
        grid.accumulate(acc, solve(grid.extract(image, r, c), grid.extract(trimap, r, c), solver,
                                   device, cancel), r, c)
        if progress is not None:
            progress(i + 1, len(cells), "prior")
    out[unknown] = acc[unknown]
    return out


def compute_prior(image: np.ndarray, trimap: np.ndarray, method: str = "global",
                  max_side: int = 1024, patch: int = 320, overlap: int = 32,
                  progress=None, cancel=None, solver: str = "cf", device="cpu") -> np.ndarray:
    if method == "global":
        return global_prior(image, trimap, max_side, solver, device, cancel)
    if method == "local":
        return local_prior(image, trimap, patch, overlap, max_side, progress, cancel, solver, device)
    raise ValueError(f"prior method must be one of {PRIOR_METHODS}, got {method!r}")
