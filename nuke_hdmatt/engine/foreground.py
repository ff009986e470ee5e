"""Foreground colour from an alpha: solve ``I = aF + (1-a)B`` for F (and B), in torch.

The multilevel method of Germer et al. 2020 ("Fast multi-level foreground estimation",
arXiv:2006.14970; PyMatting's ``estimate_foreground_ml``): coarse-to-fine over a pyramid of
nearest-neighbour levels, each level a few sweeps of a per-pixel 2x2 least-squares solve of
the matting equation with a smoothness term towards the four neighbours, weighted more where
alpha changes (``regularization + gradient_weight * |a - a_neighbour|``).

Where this differs from PyMatting, and why:

* Sweeps are red-black Gauss-Seidel (the two halves of a checkerboard in turn), so a level is
  a handful of whole-array torch operations that run on the engine's device; PyMatting's
  raster-order sweep is sequential.
* Pixels with alpha exactly 1 are foreground (F = I) and alpha exactly 0 background (B = I):
  the equation is exact there, so they are fixed rather than estimated, and anchor their
  neighbours' solves.
* The gradient weight is 0.1, not PyMatting's 1: with less smoothing across alpha edges the
  colour of thin strands stays their own. Chosen on composites of four training images
  (GT01, GT05, GT07, GT12, ground-truth alpha, new background; none of them is one of the
  five validation images ``benchmarks/foreground.py`` reports): mean re-composite error at
  800 px 1.87e-3 (weight 1), 1.47e-3 (0.5), 1.27e-3 (0.25), 1.17e-3 (0.1), 1.45e-3 (0),
  PyMatting 1.92e-3; at 3K (GT01, GT07) 1.10e-3 (1), 0.92e-3 (0.1), PyMatting 1.29e-3.
* Values are clipped to the plate's own range (at least [0, 1]) instead of [0, 1]: in scene
  linear light, highlights are above 1.
* F may not bring a pixel more light than it has: with the background no darker than the
  plate's floor ``lo`` (<= 0), ``aF = I - (1-a)B <= I - (1-a) lo``, so F is held to
  ``(I - (1-a) lo) / a`` per channel, a bound the true F never exceeds. The smoothness term
  spreads a bright pixel's F to its neighbours (most through the coarse levels, where one
  pixel stands for many): one glint of 50 in a soft edge put F above 10 on hundreds of
  partly covered pixels around it, so composites over a new background glowed there.

Threads: on the CPU the solve runs on torch's thread count (the caller's choice, as for the
prior). It is thousands of small whole-tile ops per frame, so a team of two threads on a
shared 2-core machine whose other core is busy spends most of its time waiting at each op's
barrier: GT02 at 3278x2150 took 12.6 and 34.7 CPU s on 2 threads against 2.7 and 3.2 on one
(the machine at load 5, then with one more busy process). PyMatting's numba kernels, run in
the same process after torch, move torch to ``NUMBA_NUM_THREADS`` threads behind the caller's
back; that, not the solve, made the first timings swing (6K 4.7-50 s, 3K 1.4-43 s; the
benchmark now sets torch's thread count again around them). Subnormal floats are not flushed: there are
none in the solve on the benchmark frames, and where a plate channel is exactly 0 under
partial alpha (colours then fade towards 0 sweep by sweep) 581,000 of them cost nothing
measurable (1.6 s with or without ``torch.set_flush_denormal``, AVX-512 CPU).

Memory: levels up to ``base_side`` are solved on the whole frame; the finer ones (at most
two or three at 6K-8K) tile by tile, each tile with a margin of ``MARGIN`` pixels at every
level, so the working set is a few tiles whatever the frame size. A tile with no pixel
strictly between 0 and 1 (and none within its margin) is not solved: F is the plate where
alpha is 1 and the coarse estimate elsewhere, which no composite can see (alpha is 0 there).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf

from ..errors import Cancelled

__all__ = ["estimate_foreground"]

REGULARIZATION = 1e-5
GRADIENT_WEIGHT = 0.1
SMALL_SIZE = 32
SMALL_ITERATIONS = 10
BIG_ITERATIONS = 2
BASE_SIDE = 1024
TILE = 512
# In pixels of each level: 2 sweeps of red-black move information 4 pixels, so 16 keeps a
# tile's clamped border out of the part that is kept, also after it is enlarged to the next
# level (tests/test_engine_foreground.py checks tiled against whole-frame solves).
MARGIN = 16


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, device="cpu",
                        regularization: float = REGULARIZATION,
                        gradient_weight: float = GRADIENT_WEIGHT,
                        small_iterations: int = SMALL_ITERATIONS,
                        big_iterations: int = BIG_ITERATIONS, small_size: int = SMALL_SIZE,
                        base_side: int = BASE_SIDE, tile: int = TILE,
                        progress=None, cancel=None) -> np.ndarray:
    """Unpremultiplied foreground colour for a plate and its alpha.

    Parameters
    ----------
    image : ndarray, float32, shape (H, W, C) (C is 3 for RGB)
        The plate in scene-linear light (the matting equation holds for light only), any
        range (negative and above-1 values are kept within the plate's own range). Must be
        finite.
    alpha : ndarray, float32, shape (H, W), values in [0, 1]
        Coverage; 0 and 1 exactly mark pure background and foreground.
    device : str or torch.device
        Where the solve runs (the engine's device).
    regularization, gradient_weight : float
        Smoothness towards the neighbours' colours: ``regularization + gradient_weight *
        |alpha - alpha_neighbour|`` (PyMatting's regularization; see the module notes
        for the gradient weight).
    small_iterations, big_iterations, small_size : int
        Sweeps per level: ``small_iterations`` while both sides are at most ``small_size``.
    base_side : int
        Levels whose long side is at most this are solved on the whole frame; finer ones in
        tiles of ``tile`` pixels (bounded memory at 6K-8K).
    progress : callable(done, total, stage), optional
        Called after each whole level and each tile with stage ``"foreground"``: one count
        (a whole level counts its pixels in tiles).
    cancel : callable() -> bool, optional
        Polled between levels and tiles; True raises :class:`~nuke_hdmatt.errors.Cancelled`.

    Returns
    -------
    ndarray, float32, shape (H, W, C)
        F in the same colour space as ``image`` (scene linear), unpremultiplied; equal to
        ``image`` where alpha is 1. Where alpha is 0, F is a smooth extension of the nearby
        foreground colours (invisible in any composite).
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    if image.ndim != 3 or image.shape[:2] != alpha.shape:
        raise ValueError(f"image must be HxWxC and alpha HxW of the same size, got "
                         f"{image.shape} and {alpha.shape}")
    if not image.size:
        return image.copy()
    if not np.isfinite(alpha).all():   # a NaN would spread through every level's sweeps
        raise ValueError("alpha holds NaN or inf")
    dev = torch.device(device)
    h0, w0, _ = image.shape
    solver = _Solver(image, alpha, dev, regularization, gradient_weight, small_iterations,
                     big_iterations, small_size)
    sizes = _level_sizes(h0, w0)
    n_base = max(i for i, (h, w) in enumerate(sizes) if max(h, w) <= base_side or i == 0)
    # one count over the whole levels (weighted by their pixels, in tiles) and the tiles
    base_steps = [max(1, round(h * w / tile ** 2)) for h, w in sizes[:n_base + 1]]
    tiled = n_base < len(sizes) - 1
    steps = _Steps(sum(base_steps) + (len(_tile_corners(h0, w0, tile)) if tiled else 0),
                   progress, cancel)
    with torch.inference_mode():
        f, b = solver.initial()
        for i in range(n_base + 1):
            steps.check()
            f, b = solver.level(sizes[i], f, b, None)
            steps.advance(base_steps[i])
        if tiled:
            out = _tiled(solver, sizes, n_base, f, b, tile, steps)
        else:
            out = np.ascontiguousarray(f.permute(1, 2, 0).cpu().numpy())
    return _within_the_light(out, image, alpha, solver.lo)


def _within_the_light(f: np.ndarray, image: np.ndarray, alpha: np.ndarray, lo: float,
                      rows: int = 512) -> np.ndarray:
    """``f`` held (in place) to ``(I - (1-a) lo) / a`` where 0 < a < 1 (see the module
    notes), in strips of ``rows`` rows so a 6K frame needs no frame-sized temporaries, and
    on those pixels alone (a 6K frame with 10 % of them scattered: 0.33 s instead of 0.81 s)."""
    for y in range(0, f.shape[0], rows):
        ys, xs = np.nonzero((alpha[y:y + rows] > 0) & (alpha[y:y + rows] < 1))
        if not len(ys):
            continue
        ys += y
        a = alpha[ys, xs][:, None]
        bound = (image[ys, xs] - (1 - a) * lo) / np.maximum(a, 1e-6)
        f[ys, xs] = np.minimum(f[ys, xs], bound)
    return f


def _mean_where(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean colour of ``image`` (H, W, C) over ``mask`` (zeros where it is empty), without
    gathering the pixels (a 6K plate's boolean gather took 1.2 s a mask; this 0.15 s, and
    equal to the bit: the same float32 sums in the same order)."""
    n = int(np.count_nonzero(mask))
    if not n:
        return np.zeros(image.shape[2], np.float32)
    return np.einsum("ij,ijk->k", mask.astype(np.float32), image) / np.float32(n)


def _level_sizes(h0: int, w0: int) -> list[tuple[int, int]]:
    # PyMatting's pyramid: the long side roughly halves per level, down to 1x1
    n = max(1, int(math.ceil(math.log2(max(w0, h0)))))
    return [(max(1, round(h0 ** (i / n))), max(1, round(w0 ** (i / n)))) for i in range(n + 1)]


class _Solver:
    """One frame's data and the per-level red-black sweeps."""

    def __init__(self, image, alpha, dev, reg, grad, small_it, big_it, small_size):
        self.image, self.alpha, self.dev = image, alpha, dev
        self.reg, self.grad = reg, grad
        self.small_it, self.big_it, self.small_size = small_it, big_it, small_size
        self.lo = min(0.0, float(image.min()))
        self.hi = max(1.0, float(image.max()))

    def initial(self):
        """1x1 F and B: the mean colours of the confident foreground and background."""
        a = self.alpha
        c = self.image.shape[2]
        f, b = (_mean_where(self.image, mask) for mask in (a > 0.9, a < 0.1))
        as_t = lambda v: torch.from_numpy(np.asarray(v, np.float32)).to(self.dev).view(c, 1, 1)
        return as_t(f), as_t(b)

    def crop(self, size, rows, cols):
        """The plate and alpha of one level (nearest-neighbour) at ``rows`` x ``cols``."""
        h, w = size
        h0, w0 = self.alpha.shape
        ys = rows * h0 // h
        xs = cols * w0 // w
        if h == h0 and w == w0:
            sl = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
            img, a = self.image[sl], self.alpha[sl]
        else:
            # one fancy index for both axes: rows first would copy whole frame-wide rows
            cut = np.ix_(ys, xs)
            img, a = self.image[cut], self.alpha[cut]
        img = torch.from_numpy(np.ascontiguousarray(img)).to(self.dev).permute(2, 0, 1)
        return img, torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

    def level(self, size, f_prev, b_prev, window):
        """Solve one level. ``window`` = (rows, cols, prev_rows, prev_cols) index arrays
        (numpy int64) for a tile, or None for the whole level; f_prev/b_prev are the previous
        level's (whole, or the previous tile crop whose first row/col are prev_rows[0]...)."""
        h, w = size
        if window is None:
            rows, cols = np.arange(h), np.arange(w)
            ph, pw = f_prev.shape[1:]
            pr, pc = rows * ph // h, cols * pw // w
        else:
            rows, cols, pr, pc = window
        img, a = self.crop(size, rows, cols)
        pr_t = torch.from_numpy(np.clip(pr, 0, f_prev.shape[1] - 1)).to(self.dev)
        pc_t = torch.from_numpy(np.clip(pc, 0, f_prev.shape[2] - 1)).to(self.dev)
        f = f_prev.index_select(1, pr_t).index_select(2, pc_t)
        b = b_prev.index_select(1, pr_t).index_select(2, pc_t)
        small = h <= self.small_size and w <= self.small_size
        return self.sweeps(img, a, f, b, self.small_it if small else self.big_it)

    def sweeps(self, img, a, f, b, iterations):
        """Red-black Gauss-Seidel sweeps of the per-pixel 2x2 solve (Germer et al. eq. 5).

        F and B travel stacked as one (2C, H, W) tensor, so each half-sweep is one pass of
        neighbour sums; fixed pixels (alpha 0 or 1) are set once and never updated. The
        half-sweeps work in preallocated buffers: thousands of frame-sized temporaries per
        frame otherwise cost more in page faults than in arithmetic."""
        c = img.shape[0]
        weights = [self.reg + self.grad * (a - n).abs() for n in _neighbours(a[None])[:, 0]]
        total = sum(weights)
        a1 = 1.0 - a
        a00, a11, a01 = a * a + total, a1 * a1 + total, a * a1
        inv = 1.0 / (a00 * a11 - a01 * a01)
        m00, m01, m11 = inv * a11, -inv * a01, inv * a00
        data = torch.cat([a * img, a1 * img])
        fixed = torch.cat([(a >= 1.0).expand(c, -1, -1), (a <= 0.0).expand(c, -1, -1)])
        x = torch.where(fixed, torch.cat([img, img]), torch.cat([f, b])).contiguous()
        h, w = a.shape
        yy = torch.arange(h, device=a.device)[:, None]
        xx = torch.arange(w, device=a.device)[None, :]
        red = (yy + xx) % 2 == 0
        masks = (red & ~fixed, ~red & ~fixed)
        pad = x.new_empty((2 * c, h + 2, w + 2))
        rhs, new = torch.empty_like(x), torch.empty_like(x)
        wl, wr, wu, wd = (wt.expand_as(x) for wt in weights)
        m00, m01, m11 = (m.expand(c, -1, -1) for m in (m00, m01, m11))
        for _ in range(iterations):
            for mask in masks:
                _replicate_pad(x, pad)
                torch.mul(wl, pad[:, 1:-1, :-2], out=rhs)
                rhs.addcmul_(wr, pad[:, 1:-1, 2:]).addcmul_(wu, pad[:, :-2, 1:-1])
                rhs.addcmul_(wd, pad[:, 2:, 1:-1]).add_(data)
                rf, rb = rhs[:c], rhs[c:]
                torch.mul(m00, rf, out=new[:c]).addcmul_(m01, rb)
                torch.mul(m01, rf, out=new[c:]).addcmul_(m11, rb)
                new.clamp_(self.lo, self.hi)
                torch.where(mask, new, x, out=x)
        return x[:c], x[c:]


def _replicate_pad(x: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` (C, H+2, W+2) = ``x`` (C, H, W) with its edge rows and columns repeated."""
    out[:, 1:-1, 1:-1] = x
    out[:, 0, 1:-1] = x[:, 0]
    out[:, -1, 1:-1] = x[:, -1]
    out[:, :, 0] = out[:, :, 1]
    out[:, :, -1] = out[:, :, -2]


def _neighbours(x: torch.Tensor) -> torch.Tensor:
    """(4, C, H, W): left, right, up, down neighbours of (C, H, W), edges repeated."""
    p = nnf.pad(x[None], (1, 1, 1, 1), mode="replicate")[0]
    return torch.stack([p[:, 1:-1, :-2], p[:, 1:-1, 2:], p[:, :-2, 1:-1], p[:, 2:, 1:-1]])


class _Steps:
    """The frame's foreground steps: reported as one count, cancel polled before each."""

    def __init__(self, total: int, progress, cancel):
        self.total, self.done, self.progress, self.cancel = total, 0, progress, cancel

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total, "foreground")


def _tile_corners(h0: int, w0: int, tile: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(0, h0, tile) for x in range(0, w0, tile)]


def _tiled(solver, sizes, n_base, f_base, b_base, tile, steps: _Steps):
    """The levels finer than the base, tile by tile of the full-resolution frame."""
    h0, w0 = solver.alpha.shape
    image, alpha = solver.image, solver.alpha
    c = image.shape[2]
    out = np.empty((h0, w0, c), np.float32)
    tiles = _tile_corners(h0, w0, tile)
    fine = sizes[n_base + 1:]
    # a full-resolution margin wide enough to hold MARGIN pixels of the coarsest fine level
    reach = int(math.ceil(MARGIN * h0 / fine[0][0])) + 1
    mixed = (alpha > 0.0) & (alpha < 1.0)
    base_np = None
    for y0, x0 in tiles:
        steps.check()
        y1, x1 = min(h0, y0 + tile), min(w0, x0 + tile)
        if not mixed[max(0, y0 - reach):y1 + reach, max(0, x0 - reach):x1 + reach].any():
            if base_np is None:
                base_np = f_base.permute(1, 2, 0).cpu().numpy()
            bh, bw = base_np.shape[:2]
            coarse = base_np[np.arange(y0, y1) * bh // h0][:, np.arange(x0, x1) * bw // w0]
            out[y0:y1, x0:x1] = np.where(alpha[y0:y1, x0:x1, None] >= 1.0,
                                         image[y0:y1, x0:x1], coarse)
        else:
            f, b = f_base, b_base
            # the previous level's full size and where its crop starts (the base is whole)
            ph, pw, pr0, pc0 = f.shape[1], f.shape[2], 0, 0
            for h, w in fine:
                rows, cols = _span(y0, y1, h, h0), _span(x0, x1, w, w0)
                window = (rows, cols, rows * ph // h - pr0, cols * pw // w - pc0)
                f, b = solver.level((h, w), f, b, window)
                ph, pw, pr0, pc0 = h, w, int(rows[0]), int(cols[0])
            tile_f = f[:, y0 - pr0:y1 - pr0, x0 - pc0:x1 - pc0]
            out[y0:y1, x0:x1] = tile_f.permute(1, 2, 0).cpu().numpy()
        steps.advance()
    return out


def _span(t0: int, t1: int, n: int, n0: int) -> np.ndarray:
    """Level indices (of a level n long, of a full size n0) covering full-resolution
    [t0, t1) plus MARGIN level pixels each side."""
    lo = max(0, t0 * n // n0 - MARGIN)
    hi = min(n, -(-t1 * n // n0) + MARGIN)
    return np.arange(lo, hi, dtype=np.int64)
