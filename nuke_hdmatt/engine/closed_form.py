"""Closed-form matting (Levin, Lischinski & Weiss 2008) in torch, matrix-free.

The energy is PyMatting's ``estimate_alpha_cf``: the matting Laplacian L of (2r+1)^2 windows
lying wholly inside the image (epsilon 1e-7, radius 1), known pixels held at the trimap, and
``L_UU alpha_U = -L_UK alpha_K`` solved for the unknown pixels U.

L is never formed. With c_{k,j} = I_j - mu_k the colour of pixel j centred on window k's
mean, M_k = (Sigma_k + eps/n)^-1 (n pixels a window) and, for a field p,
    a_k = M_k (1/n) sum_{j in w_k} c_{k,j} p_j,      pbar_k = mean_{j in w_k} p_j,
He, Sun & Tang's fast large-kernel form (CVPR 2010) gives
    (L p)_i = N_i p_i - sum_{k : i in w_k} (pbar_k + a_k . c_{k,i}),
N_i the number of windows holding i. Written per window, pbar_k + a_k . c_{k,i} is the
n x n block W_k = (1 + c_k M_k c_k') / n applied to the window's values. Each window's W_k
is computed once, in float64 from colours centred on the window (never raw second moments,
so the 1e-8 variances epsilon competes with are resolved), kept in float32. L_UU is then
summed from the blocks into a sparse matrix, row by row in the order of the (4r+1)^2
neighbour offsets, so it comes out as CSR with no sort: an iteration is one sparse
matrix-vector product (8x faster on 2 CPU threads than applying the blocks per window,
one kernel on a GPU instead of about ten). Only the windows that touch an unknown pixel
are kept (the others do not enter the system), so the cost follows the unknown area, not
the frame.

The system is solved by conjugate gradients with a Jacobi preconditioner, warm-started from
the same solve on the frame halved (coarse to fine), in float32 on the image's device. It
polls ``cancel`` between iterations and never raises on non-convergence: it returns its last
iterate and the relative residual it reached.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

EPSILON = 1e-7
RADIUS = 1
RTOL = 3e-5          # relative residual; mean abs diff to PyMatting <= 0.0064 on the dev images
MAX_ITER = 1000
COARSEST = 64          # no coarser level once the short side would drop below this
SYNC_EVERY = 10        # iterations between residual checks (each a host sync on a GPU)


class UnknownLaplacian:
    """L_UU and L_UK of ``image`` (3, H, W), applied to vectors over the unknown pixels."""

    def __init__(self, image: torch.Tensor, unknown: torch.Tensor, eps: float = EPSILON,
                 r: int = RADIUS):
        dev = image.device
        h, w = unknown.shape
        size = 2 * r + 1
        offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        n = len(offsets)
        # windows (by centre) that hold an unknown pixel and lie inside the image
        touched = F.max_pool2d(unknown[None, None].float(), size, 1, r)[0, 0] > 0
        interior = torch.zeros_like(unknown)
        interior[r:h - r, r:w - r] = True
        yk, xk = torch.nonzero(touched & interior, as_tuple=True)
        dy = torch.tensor([o[0] for o in offsets], device=dev)
        dx = torch.tensor([o[1] for o in offsets], device=dev)
        nbr = (yk[:, None] + dy) * w + (xk[:, None] + dx)                       # (K, n) flat
        flat_u = torch.nonzero(unknown.flatten(), as_tuple=True)[0]
        self.n_unknown = len(flat_u)
        upos = torch.full((h * w,), self.n_unknown, dtype=torch.long, device=dev)
        upos[flat_u] = torch.arange(self.n_unknown, device=dev)
        self.gather = upos[nbr]                              # window pixel -> unknown slot
        self.nbr = nbr
        # for each unknown pixel i and offset d: the entry (k, d) of window k = i - d
        kpos = torch.full((h * w,), -1, dtype=torch.long, device=dev)
        kpos[yk * w + xk] = torch.arange(len(yk), device=dev)
        yu, xu = flat_u // w, flat_u % w
        ky, kx = yu[:, None] - dy, xu[:, None] - dx
        inside = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        k = torch.where(inside, kpos[(ky.clamp(0, h - 1) * w + kx.clamp(0, w - 1))], -1)
        sentinel = len(yk) * n
        self.scatter = torch.where(k >= 0, k * n + torch.arange(n, device=dev), sentinel)
        self.count = (k >= 0).sum(1).float()
        # window statistics in float64, kept in float32
        colours = image.double().flatten(1).t()[nbr]                             # (K, n, 3)
        c = colours - colours.mean(1, keepdim=True)
        cov = torch.einsum("kdi,kdj->kij", c, c) / n + (eps / n) * torch.eye(3, dtype=c.dtype, device=dev)
        cm = c @ torch.linalg.inv(cov)
        self.blocks = ((1 + cm @ c.transpose(1, 2)) / n).float()               # (K, n, n)
        self.diagonal = self._assemble(1 - torch.diagonal(self.blocks, dim1=1, dim2=2))
        self.matrix = self._sparse_uu(offsets, flat_u, upos, h, w, r)

    def _sparse_uu(self, offsets, flat_u, upos, h, w, r):
        """L_UU as a CSR matrix. Row i's entries sit at the (4r+1)^2 offsets j - i between
        pixels sharing a window: -W_k[a, b] summed over the windows k holding pixel i at
        place a and j at place b, plus N_i on the diagonal."""
        dev = self.blocks.device
        span = 4 * r + 1                                      # offsets -2r..2r per axis
        off = torch.tensor(offsets, device=dev)
        rel = off[None, :, :] - off[:, None, :]                                # (n, n, 2)
        code = (rel[..., 0] + 2 * r) * span + rel[..., 1] + 2 * r
        slot = self.gather[:, :, None] * span * span + code                    # (K, n, n)
        width = span * span
        coef = self.blocks.new_zeros((self.n_unknown + 1) * width)   # + one row for known a
        coef.index_add_(0, slot.flatten(), -self.blocks.flatten())
        coef = coef[:self.n_unknown * width].view(self.n_unknown, width)
        coef[:, width // 2] += self.count
        d = torch.arange(-2 * r, 2 * r + 1, device=dev)
        dy, dx = d.repeat_interleave(span), d.repeat(span)
        yu, xu = flat_u // w, flat_u % w
        ny, nx = yu[:, None] + dy, xu[:, None] + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        col = torch.where(inside, upos[ny.clamp(0, h - 1) * w + nx.clamp(0, w - 1)], self.n_unknown)
        keep = col < self.n_unknown                  # unknown neighbours, in column order
        crow = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.sum(1).cumsum(0)])
        with warnings.catch_warnings():              # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col[keep], coef[keep],
                                           size=(self.n_unknown, self.n_unknown),
                                           check_invariants=False)

    def _assemble(self, t: torch.Tensor) -> torch.Tensor:
        """sum over the windows holding each unknown pixel of t[k, d] (t: (K, n))."""
        t_ext = torch.cat([t.flatten(), t.new_zeros(1)])
        return t_ext[self.scatter].sum(1)

    def window_terms(self, p: torch.Tensor) -> torch.Tensor:
        """(K, n) field values p at each window's pixels -> pbar_k + a_k . c_{k,d}."""
        return torch.bmm(self.blocks, p[..., None])[..., 0]

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """L_UU v for v over the unknown pixels."""
        return self.matrix @ v

    def rhs(self, known_alpha: torch.Tensor) -> torch.Tensor:
        """-L_UK alpha_K for a full-frame field of known alphas (zero on unknown pixels)."""
        return self._assemble(self.window_terms(known_alpha.flatten()[self.nbr]))


def pcg(op, b: torch.Tensor, x: torch.Tensor, diag: torch.Tensor, rtol: float = RTOL,
        max_iter: int = MAX_ITER, cancel=None):
    """Jacobi-preconditioned conjugate gradients from ``x``; (x, relative residual).
    ``cancel()`` True raises :class:`Cancelled`; running out of iterations does not raise."""
    from ..errors import Cancelled

    inv_d = 1.0 / diag.clamp_min(1e-12)
    norm_b = float(torch.linalg.vector_norm(b)) or 1.0
    r = b - op(x)
    z = r * inv_d
    p = z
    rz = torch.dot(r, z)
    for it in range(max_iter):
        if cancel is not None and cancel():
            raise Cancelled("cancelled during the prior solve")
        if it % SYNC_EVERY == 0 and float(torch.linalg.vector_norm(r)) < rtol * norm_b:
            break
        q = op(p)
        step = rz / torch.dot(p, q).clamp_min(1e-30)
        x = x + step * p
        r = r - step * q
        z = r * inv_d
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    return x, float(torch.linalg.vector_norm(r)) / norm_b


def halve(image: torch.Tensor, trimap: torch.Tensor):
    """(3, H, W) image and (H, W) trimap area-halved, the trimap snapped to {0, 0.5, 1}."""
    h, w = trimap.shape
    size = ((h + 1) // 2, (w + 1) // 2)
    img = F.interpolate(image[None], size=size, mode="area")[0]
    tri = F.interpolate(trimap[None, None], size=size, mode="area")[0, 0]
    snapped = torch.full_like(tri, 0.5)
    snapped[tri >= 1 - 1e-4] = 1.0
    snapped[tri <= 1e-4] = 0.0
    return img, snapped


def solve(image: torch.Tensor, trimap: torch.Tensor, eps: float = EPSILON, r: int = RADIUS,
          rtol: float = RTOL, max_iter: int = MAX_ITER, cancel=None, coarse_to_fine=True):
    """Closed-form alpha for image (3, H, W) and trimap (H, W) {0, 0.5, 1}, float32 tensors
    on one device -> (alpha (H, W), unclipped; relative residual of the finest solve).
    The trimap needs both known regions (else the system has no anchor); a frame narrower
    than a window is a ValueError (the caller falls back to the trimap-based prior)."""
    unknown = trimap == 0.5
    h, w = trimap.shape
    if min(h, w) < 2 * r + 1:       # no window fits: the energy says nothing about alpha
        raise ValueError(f"closed-form matting needs at least {2 * r + 1}x{2 * r + 1} pixels")
    start = torch.full_like(trimap, 0.5)
    if coarse_to_fine and min(h, w) // 2 >= COARSEST:
        small_img, small_tri = halve(image, trimap)
        if (small_tri == 0.5).any() and (small_tri == 1).any() and (small_tri == 0).any():
            coarse, _ = solve(small_img, small_tri, eps, r, rtol, max_iter, cancel)
            start = F.interpolate(coarse.clamp(0, 1)[None, None], size=(h, w), mode="bilinear",
                                  align_corners=False)[0, 0]
    lap = UnknownLaplacian(image, unknown, eps, r)
    known = torch.where(unknown, torch.zeros_like(trimap), trimap)
    x, rel = pcg(lap, lap.rhs(known), start[unknown], lap.diagonal, rtol, max_iter, cancel)
    alpha = trimap.clone()
    alpha[unknown] = x
    return alpha, rel
