"""Shared matting (Gastal & Oliveira 2010) in torch, as PyMatting's ``estimate_alpha_sm``
implements it (its defaults, its quirks: the expanded trimap, the fixed 8x8 start angles,
the edge cost that steps ``y`` by the ``x`` increment, unnormalised Gaussians), so the alpha
the network was trained on is reproduced. Vectorised over the unknown pixels; the loops are
over angles, ray steps and window offsets, never over pixels. The gathering cost, ray
positions and distances are float64 as in PyMatting's numba kernels; colour distortions,
gradients and the smoothing weights are float32 (twice the gather bandwidth; the alphas move
by about 1e-4 on the dev images, well inside the network's tolerance of 0.01).
"""

from __future__ import annotations

import math

import numpy as np
import torch

EXPANSION_RADIUS = 10
EXPANSION_THRESHOLD = 0.02
ANGLES = 4
WEIGHTS = (3.0, 2.0, 1.0, 4.0)       # exponents of Np, Ap, Dp_f, Dp_b in the gathering cost
NP_RADIUS = 1
REFINE_RADIUS = 5
SMOOTH_RADIUS = 5
SIGMA_SQ2 = 0.1


class _Frame:
    """The frame's pixels flattened, and window offsets of a list of pixels; ``poll()``
    raises :class:`~nuke_hdmatt.errors.Cancelled` when ``cancel()`` says so."""

    def __init__(self, image: torch.Tensor, trimap: torch.Tensor, cancel=None):
        self.cancel = cancel
        self.h, self.w = trimap.shape
        self.image = image.reshape(-1, 3)               # (H*W, 3) float32
        self.trimap = trimap.reshape(-1)

    def poll(self):
        if self.cancel is not None and self.cancel():
            from ..errors import Cancelled
            raise Cancelled("cancelled during the prior solve")

    def offset(self, ys, xs, dy, dx):
        """(valid, flat index) of (ys + dy, xs + dx); the index is clamped where invalid."""
        y2, x2 = ys + dy, xs + dx
        valid = (y2 >= 0) & (y2 < self.h) & (x2 >= 0) & (x2 < self.w)
        return valid, y2.clamp(0, self.h - 1) * self.w + x2.clamp(0, self.w - 1)

    def clamped(self, ys, xs):
        return ys.clamp(0, self.h - 1) * self.w + xs.clamp(0, self.w - 1)


CHUNK = 1 << 14        # pixels whose windows are held at once


def _windows(fr: _Frame, ys, xs, radius):
    """(slice, valid, flat index), each (n, (2r+1)^2), for chunks of the pixels (ys, xs)."""
    offs = _offsets(radius)
    dy = torch.tensor([o[0] for o in offs], device=ys.device)
    dx = torch.tensor([o[1] for o in offs], device=ys.device)
    for s in range(0, len(ys), CHUNK):
        fr.poll()
        sl = slice(s, s + CHUNK)
        valid, q = fr.offset(ys[sl, None], xs[sl, None], dy, dx)
        yield sl, valid, q


def _alpha(i, f, b, dim=-1):
    """estimate_alpha: projection of I on the F-B line, clipped; float32 inputs whose colour
    channels lie along ``dim`` (-1: (..., 3); 0: (3, ...), the layout of the window gathers,
    contiguous for each channel where (n, window, 3) makes every op stride by 3)."""
    fb, ib = f - b, i - b
    return ((ib * fb).sum(dim) / ((fb * fb).sum(dim) + 1e-5)).clamp(0.0, 1.0)


def _mp2(i, f, b, dim=-1):
    """Squared chromatic distortion of I against the F, B pair (channels along ``dim``, as
    for :func:`_alpha`), float32: PyMatting's float64 changes the alphas by about 1e-7 (mean
    over the unknown pixels of the dev images) and costs twice the memory traffic of these
    gathers."""
    d = (b - i) + _alpha(i, f, b, dim).unsqueeze(dim) * (f - b)
    return (d * d).sum(dim)


def _offsets(radius, by_distance=False):
    offs = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    if by_distance:     # nearest first; ties in raster order (a stable sort)
        offs = [o for o in sorted(offs, key=lambda o: math.hypot(o[1], o[0]))
                if math.hypot(o[1], o[0]) <= radius]
    return offs


def expand_trimap(fr: _Frame, ys, xs, k_i=EXPANSION_RADIUS, k_c=EXPANSION_THRESHOLD):
    """Unknown pixels (ys, xs) take the label of the nearest known pixel within k_i whose
    colour is within k_c; -> the expanded labels of those pixels (0.5 where none)."""
    out = torch.full(ys.shape, 0.5, dtype=torch.float32, device=ys.device)
    colour = fr.image[ys * fr.w + xs]
    k_c = torch.tensor(k_c, dtype=torch.float32, device=ys.device)
    offsets = _offsets(k_i, by_distance=True)
    # only pixels within k_i (chessboard, so a superset of the euclidean disc) of a known one
    from scipy import ndimage
    labels = fr.trimap.reshape(fr.h, fr.w).cpu().numpy()
    near = torch.from_numpy(ndimage.distance_transform_cdt(
        (labels != 0) & (labels != 1), metric="chessboard").ravel() <= k_i).to(ys.device)
    live = torch.nonzero(near[ys * fr.w + xs], as_tuple=True)[0]
    for s in range(0, len(offsets), 32):
        if not len(live):
            break
        dy = torch.tensor([o[0] for o in offsets[s:s + 32]], device=ys.device)
        dx = torch.tensor([o[1] for o in offsets[s:s + 32]], device=ys.device)
        valid, q = fr.offset(ys[live, None], xs[live, None], dy, dx)
        label = fr.trimap[q]
        d = colour[live, None] - fr.image[q]
        dist = torch.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2])
        first = _first(valid & ((label == 0) | (label == 1)) & ~(dist > k_c))
        hit = first < len(dy)
        rows = torch.arange(len(live), device=ys.device)
        out[live[hit]] = label[rows[hit], first[hit]]
        live = live[~hit]
    return out


def _edge_cost(fr: _Frame, px, py, sx, sy):
    """PyMatting's Ep: image gradient along the segment to a sample, at most 10 steps."""
    img = fr.image.reshape(fr.h, fr.w, 3)
    # the frame's central differences once (borders clamped, as PyMatting's are), two gathers
    # a step instead of four
    x_of = torch.arange(fr.w, device=img.device)
    y_of = torch.arange(fr.h, device=img.device)
    gx = (0.5 * (img[:, (x_of + 1).clamp_max(fr.w - 1)] - img[:, (x_of - 1).clamp_min(0)])).reshape(-1, 3)
    gy = (0.5 * (img[(y_of + 1).clamp_max(fr.h - 1)] - img[(y_of - 1).clamp_min(0)])).reshape(-1, 3)
    spx, spy = (sx - px).double(), (sy - py).double()
    d = torch.hypot(spx, spy)
    steps = torch.ceil(d).clamp(1, 10)
    step_x, step_y = spx / steps, spy / steps
    # positions in float64 (truncation decides the pixel), gradients in float32
    sx32, sy32 = step_x.float()[:, None], step_y.float()[:, None]
    total = torch.zeros(d.shape, dtype=torch.float32, device=d.device)
    for i in range(11):
        live = (i <= steps) & (d != 0)
        qx = torch.trunc(px + i * step_x).long()
        qy = torch.trunc(py + i * step_x).long()        # sic: PyMatting steps y by step_x
        q = fr.clamped(qy, qx)
        # a row outside the frame (that quirk) clamps both of its vertical neighbours to
        # one row: no vertical difference; the column lies between pixel and sample
        inside = ((qy >= 0) & (qy < fr.h))[:, None]
        ix = gx[q]
        iy = torch.where(inside, gy[q], 0.0)
        v = sx32 * ix + sy32 * iy
        total = total + torch.where(live, torch.sqrt((v * v).sum(-1)), 0.0)
    return total.double()


def _first(hit: torch.Tensor) -> torch.Tensor:
    """Index of the first True of each row, or the row length where there is none."""
    n = hit.shape[1]
    pos = torch.arange(n, 0, -1, device=hit.device)
    return torch.where(hit.any(1), (hit * pos).argmax(1), n)


def _distances(fr: _Frame):
    """Chessboard distance of every pixel to the nearest F and to the nearest B pixel (0 on
    them; beyond any ray's reach where there is none), flattened, on the frame's device."""
    from scipy import ndimage
    labels = fr.trimap.reshape(fr.h, fr.w).cpu().numpy()
    far = 2 * max(fr.h, fr.w) + 2
    out = []
    for value in (1.0, 0.0):
        hit = labels == value
        d = ndimage.distance_transform_cdt(~hit, metric="chessboard") if hit.any() else \
            np.full(labels.shape, far)
        out.append(torch.from_numpy(d.astype(np.int64).ravel()).to(fr.trimap.device))
    return out


def _march(fr: _Frame, ys, xs, dist_f, dist_b):
    """The first F and first B pixel along each pixel's ANGLES rays, the ray of angle ``a``
    at 2 pi / ANGLES * a + its start angle, stepping as PyMatting does (position
    trunc(p + step * direction), step 0, 1, ... until both are found or the ray leaves the
    frame); -> (flat index of F or -1, of B or -1), each (ANGLES, len(ys)). Steps that cannot
    land on the missing label are skipped: a step moves the sampled pixel by at most one in
    each axis, so none of the next d - 1 steps reaches a label whose nearest pixel is at
    chessboard distance d (the sampled pixels are the same). All rays march together, each
    with its own numbers, so the loop runs as long as the longest ray, not the sum over the
    angles of the longest."""
    n = 8
    m = len(ys)
    start = ((xs % n) + (ys % n) * n) * 99991 % (n * n)
    table = np.array([[2.0 * np.pi / ANGLES * a + 2.0 * np.pi / (n * n) * i for i in range(n * n)]
                      for a in range(ANGLES)])
    pick = (torch.arange(ANGLES, device=ys.device)[:, None] * (n * n) + start).reshape(-1)
    cos = torch.from_numpy(np.cos(table).ravel()).to(ys.device)[pick]
    sin = torch.from_numpy(np.sin(table).ravel()).to(ys.device)[pick]
    found_f = torch.full((ANGLES * m,), -1, dtype=torch.long, device=ys.device)
    found_b = found_f.clone()
    live = torch.arange(ANGLES * m, device=ys.device)
    xf, yf = xs.double().repeat(ANGLES), ys.double().repeat(ANGLES)
    step = torch.zeros(ANGLES * m, dtype=torch.long, device=ys.device)
    max_steps = 2 * max(fr.h, fr.w)
    while len(live):
        fr.poll()
        st = step[live].double()
        x2 = torch.trunc(xf[live] + st * cos[live]).long()
        y2 = torch.trunc(yf[live] + st * sin[live]).long()
        inside = (x2 >= 0) & (y2 >= 0) & (x2 < fr.w) & (y2 < fr.h) & (step[live] < max_steps)
        live, x2, y2 = live[inside], x2[inside], y2[inside]
        q = y2 * fr.w + x2
        label = fr.trimap[q]
        need_f, need_b = found_f[live] < 0, found_b[live] < 0
        new_f, new_b = need_f & (label == 1), need_b & (label == 0)
        found_f[live[new_f]] = q[new_f]
        found_b[live[new_b]] = q[new_b]
        need_f, need_b = need_f & ~new_f, need_b & ~new_b
        skip = torch.where(need_f & need_b, torch.minimum(dist_f[q], dist_b[q]),
                           torch.where(need_f, dist_f[q], dist_b[q])).clamp_min(1)
        keep = need_f | need_b
        live = live[keep]
        step[live] += skip[keep]
    return found_f.reshape(ANGLES, m), found_b.reshape(ANGLES, m)


def sample_gathering(fr: _Frame, ys, xs, avg_f, avg_b, weights=WEIGHTS, np_radius=NP_RADIUS):
    """Best F, B pair of the samples found along ANGLES rays -> (alpha, F, B) per pixel."""
    e_n, e_a, e_f, e_b = weights
    m = len(ys)
    dist_f, dist_b = _distances(fr)
    rays = _march(fr, ys, xs, dist_f, dist_b)
    own = ys * fr.w + xs

    def samples(which, fallback):
        idx = rays[which].T                                                  # (m, ANGLES)
        ok = idx >= 0
        # PyMatting packs the found samples first, in angle order
        order = torch.sort((~ok).to(torch.int8), dim=1, stable=True).indices
        idx, ok = idx.gather(1, order), ok.gather(1, order)
        none = ~ok.any(1)
        ok[:, 0] |= none                 # no sample: the frame's mean colour, at the pixel
        idx[:, 0] = torch.where(none, own, idx[:, 0])
        colours = fr.image[idx.clamp_min(0)]
        colours[:, 0] = torch.where(none[:, None], fallback, colours[:, 0])
        return idx, ok, colours

    f_idx, f_ok, f_col = samples(0, avg_f)
    b_idx, b_ok, b_col = samples(1, avg_b)
    xd, yd = xs.double(), ys.double()

    # the edge costs of all 2 x ANGLES samples of every pixel in one pass, (2 ANGLES, m)
    idx = torch.cat([f_idx.T, b_idx.T]).reshape(-1)
    cost = _edge_cost(fr, xd.repeat(2 * ANGLES), yd.repeat(2 * ANGLES), (idx % fr.w).double(),
                      (idx // fr.w).double()).reshape(2 * ANGLES, m)
    cost = torch.where(torch.cat([f_ok.T, b_ok.T]), cost, math.inf)
    ep_f, ep_b = cost[:ANGLES].min(0).values, cost[ANGLES:].min(0).values
    pf = ep_b / (ep_f + ep_b + 1e-5)
    colour = fr.image[own]
    nbrs = fr.image.T.contiguous()[:, torch.stack(
        [fr.clamped(ys + dy, xs + dx) for dy, dx in _offsets(np_radius)], 1)]  # (3, m, 9)
    f_ch, b_ch = f_col.permute(2, 0, 1).contiguous(), b_col.permute(2, 0, 1).contiguous()

    def powered_distance(idx, power):
        return torch.hypot(xd - (idx % fr.w).double(), yd - (idx // fr.w).double()) ** power

    dpf = [powered_distance(f_idx[:, i], e_f) for i in range(ANGLES)]
    dpb = [powered_distance(b_idx[:, j], e_b) for j in range(ANGLES)]
    best = torch.full((m,), math.inf, dtype=torch.float64, device=ys.device)
    alpha = torch.zeros(m, dtype=torch.float32, device=ys.device)
    f_out, b_out = f_col[:, 0].clone(), b_col[:, 0].clone()
    for i in range(ANGLES):
        for j in range(ANGLES):
            fr.poll()
            f, b = f_col[:, i], b_col[:, j]
            a = _alpha(colour, f, b)
            ap = pf + (1.0 - 2.0 * pf) * a.double()
            npc = _mp2(nbrs, f_ch[:, :, i, None], b_ch[:, :, j, None], 0).sum(1).double()
            cost = npc ** e_n * ap ** e_a * dpf[i] * dpb[j]
            better = f_ok[:, i] & b_ok[:, j] & (cost < best)
            best = torch.where(better, cost, best)
            alpha = torch.where(better, a, alpha)
            f_out = torch.where(better[:, None], f, f_out)
            b_out = torch.where(better[:, None], b, b_out)
    return alpha, f_out, b_out


def estimate_alpha_sm(image: torch.Tensor, trimap: torch.Tensor, cancel=None) -> torch.Tensor:
    """Shared-matting alpha of image (H, W, 3) float32 0-1 and trimap (H, W) {0, 0.5, 1}
    (both known regions present) -> (H, W) float32 in [0, 1]. ``cancel()`` is polled
    between steps (True raises :class:`~nuke_hdmatt.errors.Cancelled`)."""
    dev = image.device
    fr = _Frame(image.float().contiguous(), trimap.float().contiguous(), cancel)
    ys, xs = torch.nonzero(trimap == 0.5, as_tuple=True)
    expanded = fr.trimap.clone()
    expanded[ys * fr.w + xs] = expand_trimap(fr, ys, xs)
    fr = _Frame(fr.image.reshape(image.shape), expanded.reshape(trimap.shape), cancel)
    avg_f = fr.image[expanded == 1].mean(0)
    avg_b = fr.image[expanded == 0].mean(0)
    keep = expanded[ys * fr.w + xs] == 0.5
    ys, xs = ys[keep], xs[keep]
    own = ys * fr.w + xs
    colour = fr.image[own]
    hw = fr.h * fr.w
    # gathering: every pixel's F, B (known pixels: their colour and the other side's mean)
    g_alpha, g_f, g_b = sample_gathering(fr, ys, xs, avg_f, avg_b)
    is_f, is_b = (expanded == 1)[:, None], (expanded == 0)[:, None]
    gath_f = torch.where(is_f, fr.image, avg_f.expand(hw, 3)).clone()
    gath_b = torch.where(is_b, fr.image, avg_b.expand(hw, 3)).clone()
    gath_f[own], gath_b[own] = g_f, g_b
    # refinement: the mean of the three neighbouring pairs that best explain the colour
    ref_f, ref_b = torch.empty_like(colour), torch.empty_like(colour)
    f_ch, b_ch, colour_ch = gath_f.T.contiguous(), gath_b.T.contiguous(), colour.T.contiguous()
    for sl, valid, q in _windows(fr, ys, xs, REFINE_RADIUS):
        cost = torch.where(valid, _mp2(colour_ch[:, sl, None], f_ch[:, q], b_ch[:, q], 0),
                           math.inf)
        # the three cheapest; PyMatting breaks ties by offset order, which only matters for
        # unequal pairs of exactly equal cost (rare in float) and is not worth a stable sort
        best = torch.topk(cost, 3, dim=1, largest=False, sorted=False).indices
        qb = q.gather(1, best)
        ref_f[sl], ref_b[sl] = gath_f[qb].sum(1) / 3, gath_b[qb].sum(1) / 3
    ref_alpha = expanded.clone()
    ref_alpha[own] = _alpha(colour, ref_f, ref_b)
    full_f, full_b = gath_f.clone(), gath_b.clone()
    full_f[own], full_b[own] = ref_f, ref_b
    # local smoothing of F and B, and the low-frequency alpha
    sigma1 = float(np.float32((2 * SMOOTH_RADIUS + 1) ** 2 / (9.0 * np.pi)))
    offs = torch.tensor(_offsets(SMOOTH_RADIUS), device=dev, dtype=torch.float64)
    gauss = torch.exp(-1.0 / sigma1 * (offs ** 2).sum(1)).float()
    centre = (offs == 0).all(1)
    a_p = ref_alpha[own]
    fin_f, fin_b = torch.empty_like(colour), torch.empty_like(colour)
    low = torch.empty_like(a_p)
    f_ch, b_ch = full_f.T.contiguous(), full_b.T.contiguous()
    known = ((expanded == 0) | (expanded == 1)).float()
    for sl, valid, q in _windows(fr, ys, xs, SMOOTH_RADIUS):
        a_q = ref_alpha[q]
        wc = torch.where(centre, gauss, gauss * (a_p[sl, None] - a_q).abs())
        w_f = torch.where(valid, (wc * a_q).clamp_min(1e-5), 0.0)
        w_b = torch.where(valid, (wc * (1.0 - a_q)).clamp_min(1e-5), 0.0)
        fin_f[sl] = ((w_f * f_ch[:, q]).sum(2) / w_f.sum(1)).T
        fin_b[sl] = ((w_b * b_ch[:, q]).sum(2) / w_b.sum(1)).T
        w_a = torch.where(valid, gauss + known[q], 0.0)
        low[sl] = (w_a * a_q).sum(1) / w_a.sum(1)
    fin_alpha = _alpha(colour, fin_f, fin_b)
    # confidence: F-B distance against its neighbourhood's, and how well F, B explain I
    w_fb = torch.zeros(hw, dtype=torch.float32, device=dev)
    w_fb[own] = a_p * (1.0 - a_p)
    all_f, all_b = full_f.clone(), full_b.clone()
    all_f[own], all_b[own] = fin_f, fin_b
    fb_dist = torch.linalg.vector_norm(all_f - all_b, dim=1)
    d_fb = torch.empty(len(ys), dtype=torch.float64, device=dev)
    w_fb64, fb_dist64 = w_fb.double(), fb_dist.double()
    for sl, valid, q in _windows(fr, ys, xs, SMOOTH_RADIUS):
        wq = torch.where(valid, w_fb64[q], 0.0)
        d_fb[sl] = (wq * fb_dist64[q]).sum(1) / (wq.sum(1) + 1e-5) + 1e-5
    conf = (fb_dist[own].double() / d_fb).clamp_max(1.0) * torch.exp(
        -1.0 / float(np.float32(SIGMA_SQ2)) * torch.sqrt(_mp2(colour, fin_f, fin_b).float().double()))
    conf = conf.float()
    out = expanded.clone()
    out[own] = conf * fin_alpha + (1.0 - conf) * low
    return out.reshape(trimap.shape)
