"""A per-pixel step for the cascade: how far the full-resolution pass may move each pixel.

The cascade enlarges the network's 1024 px alpha (``coarse``) and runs the full-resolution
pass from it (``full``). Where the two disagree, which is right depends on the pixel: the
full-resolution pass resolves strands the coarse alpha blurred, but over-corrects large even
regions it was never trained to start from. :class:`DetailModel` predicts the step
``w`` in [0, 1] of ``coarse + w (full - coarse)`` from a few local measurements of the two
alphas and the plate (:data:`FEATURES`), with a small perceptron fitted to ground truth on
high-resolution composites (``benchmarks/cascade_blend.py``). Its ``snap`` head also
predicts, per pixel, how far that blend goes on to 0 or 1: both passes leave a faint haze
over background and a faint hole in solid foreground that neither step removes.

Works in tiles on the engine's device, float32, each cut to the bounding box of its unknown
pixels (tiles without any are skipped) with a :data:`MARGIN` px border (the largest
window), so no full-frame temporary beyond the output exists and tiles give the whole
frame's answer (to float rounding). Within a tile each window size's running sums cover
only what its windows reach, and every per-pixel measurement and the perceptron run on the
unknown pixels alone (a 6K frame's 10 % band: the stage 0.5x as long as measuring whole
tiles). The plate's spreads come from float64 means, so where a tile's running sums start
moves no alpha by more than 3e-5 (with float32 means, up to 0.009 on the cascade's
composites: a spread near 0 amplifies the sums' rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Cancelled

FEATURES = ("d", "abs_d", "sharpening", "region_abs_d", "wide_abs_d", "coarse", "full",
            "coarse_uncertainty", "full_uncertainty", "full_texture", "coarse_texture",
            "plate_texture", "unknown_share", "foreground_share", "background_share")
#: Measurements a model may name besides :data:`FEATURES` (the first models' set): edge
#: strengths, the two alphas' and the plate's statistics over a region, the step's local
#: mean, the plate's texture over its three channels and how far the unknown band reaches.
EXTRA_FEATURES = ("grad_coarse", "grad_full", "grad_plate", "region_coarse_uncertainty",
                  "region_full_uncertainty", "texture_d", "texture_abs_d", "region_plate_std",
                  "region_coarse", "region_full", "wide_unknown_share", "region_d",
                  "plate_rgb_texture")
TEXTURE = 2         # radius (px) of the texture measures
REGION = 16         # radius (px) of the region measures
WIDE = 48           # radius (px) of the wide ones
MARGIN = WIDE
TILE = 256          # a 6K frame's 10 % band, 2 threads: 1.6 s, as at 384; 2.0 s at 512, 2.6 at 768
#: Tiles on a GPU: each tile costs a few hundred kernel launches, four uploads and a download
#: (a wait for the device) whatever its size; a 1024 px tile takes at most 0.53 GB (all of it
#: unknown, measured on the CPU). A 6K frame's band: about 15 tiles instead of about 150 (not
#: yet timed on a GPU).
DEVICE_TILE = 1024
ROWS = 16384        # pixels through the perceptron at once
#: The perceptron's heads, by their number of outputs: ``step`` (the step's logit) and
#: ``snap`` (the step's logit, then the logits of keeping the blend, 0 and 1).
HEADS = {"step": 1, "snap": 4}


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r+1)^2 windows of (C, H, W), edges replicated: running sums, so the
    cost does not grow with the window (centred first: float32 sums of values near 1 over
    thousands of pixels would lose the small differences)."""
    k = 2 * r + 1
    mean = x.mean(dim=(1, 2), keepdim=True)
    x = F.pad((x - mean)[None], (r, r, r, r), mode="replicate")[0]
    for dim in (2, 1):
        c = torch.cumsum(x, dim=dim)
        n = c.shape[dim] - k + 1
        # window sums: c[i + k - 1] - c[i - 1], the first one c[k - 1]
        x = c.narrow(dim, k - 1, n).clone()
        x.narrow(dim, 1, n - 1).sub_(c.narrow(dim, 0, n - 1))
        x.div_(k)
    return x + mean


def _grad(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of (H, W) by central differences (0 on the border rows/columns)."""
    gy, gx = torch.zeros_like(x), torch.zeros_like(x)
    gy[1:-1] = (x[2:] - x[:-2]) / 2
    gx[:, 1:-1] = (x[:, 2:] - x[:, :-2]) / 2
    return (gx * gx + gy * gy).sqrt()


def features(image: torch.Tensor, trimap: torch.Tensor, coarse: torch.Tensor,
             full: torch.Tensor, names: tuple[str, ...] = FEATURES,
             at: torch.Tensor | None = None) -> torch.Tensor:
    """(len(names), H, W) measurements of one block: image (3, H, W) in the network's
    input space, trimap, coarse and full (H, W), all float32 on one device; ``names`` from
    :data:`FEATURES` and :data:`EXTRA_FEATURES`. ``at``: an (H, W) bool mask; given, the
    measurements of its pixels only, (len(names), N) in raster order (the windows still see
    the whole block; each window's sums start where its reach does, so they agree with the
    whole block's to float rounding, not bit for bit)."""
    height, width = trimap.shape
    if at is None:
        y0, y1, x0, x1, where = 0, height, 0, width, None
    else:
        ys, xs = at.any(1).nonzero().squeeze(1), at.any(0).nonzero().squeeze(1)
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        where = at[y0:y1, x0:x1].flatten().nonzero().squeeze(1)

    def select(x: torch.Tensor) -> torch.Tensor:
        """The wanted pixels of maps the size of their box (index_select: 20x a boolean
        index's speed)."""
        return x if where is None else x.flatten(-2).index_select(-1, where)

    def pick(x: torch.Tensor) -> torch.Tensor:
        """The wanted pixels of block-sized maps."""
        return select(x[..., y0:y1, x0:x1])

    def window(maps: list, r: int, dtype=torch.float32) -> torch.Tensor:
        """Box means of ``maps`` at the wanted pixels, each map cut to what their windows
        reach (one running-sum pass per window size and ``dtype``)."""
        a, b, c, e = max(0, y0 - r), min(height, y1 + r), max(0, x0 - r), min(width, x1 + r)
        out = _box(torch.stack([m[a:b, c:e] for m in maps]).to(dtype), r)
        return select(out[:, y0 - a:y1 - a, x0 - c:x1 - c])

    def spread(mean: torch.Tensor, square: torch.Tensor, channels: bool = False) -> torch.Tensor:
        """sqrt(mean square - squared mean) of one map's means, or with ``channels`` of
        the sum over the maps of the leading dimension."""
        var = (square - mean * mean).clamp_min(0)
        return (var.sum(0) if channels else var).sqrt()

    d = full - coarse
    lum = image.mean(0)
    unknown = (trimap == 0.5).float()
    extended = not set(names) <= set(FEATURES)
    tex = [coarse, full]
    reg = [d.abs(), unknown]
    wid = [d.abs(), (trimap == 1).float(), (trimap == 0).float()]
    # the plate's spreads from float64 means: float32 running sums over a tile carry
    # rounding errors of about 1e-6 into the means, which a spread near 0 (sqrt of mean
    # square - squared mean) amplifies to 1e-3 and the perceptron further (alphas moved by
    # up to 0.009 with where a tile's windows start)
    plate = [lum, lum * lum]
    if extended:
        tex += [d, d.abs()]
        plate += [*image, *(image * image)]
        reg += [4 * coarse * (1 - coarse), 4 * full * (1 - full), coarse, full, d]
        wid += [unknown]
    t, r, w = window(tex, TEXTURE), window(reg, REGION), window(wid, WIDE)
    tp = window(plate, TEXTURE, torch.float64)
    grads = [pick(_grad(m)) for m in (coarse, full, lum)] if extended else []
    # the rest is per pixel: only where wanted
    coarse, full, d = pick(coarse), pick(full), pick(d)
    c_unc, f_unc = 4 * coarse * (1 - coarse), 4 * full * (1 - full)
    rows = [d, d.abs(), d * (2 * coarse - 1), r[0], w[0], coarse, full, c_unc, f_unc,
            (full - t[1]).abs(), (coarse - t[0]).abs(), spread(tp[0], tp[1]), r[1], w[1], w[2]]
    if extended:
        rp = window(plate[:2], REGION, torch.float64)
        rows += [*grads, r[2], r[3], t[2], t[3], spread(rp[0], rp[1]), r[4], r[5], w[3], r[6],
                 spread(tp[2:5], tp[5:8], channels=True)]
    known = FEATURES + EXTRA_FEATURES
    return torch.stack([rows[known.index(n)].float() for n in names])


@dataclass
class DetailModel:
    """A perceptron (tanh hidden layers, or none) from its standardised features
    (``names``: :data:`FEATURES` unless it names others) to the logits of its head
    (:data:`HEADS`, :func:`head_alpha`)."""
    mean: np.ndarray            # (F,)
    std: np.ndarray             # (F,)
    layers: list                # [(weight (out, in), bias (out,)), ...]
    head: str = "step"
    names: tuple[str, ...] = FEATURES   # the features it reads, in order

    def to_dict(self) -> dict:
        return {"features": list(self.names), "head": self.head, "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "layers": [[w.tolist(), b.tolist()] for w, b in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "DetailModel":
        names = tuple(d["features"])
        unknown = [n for n in names if n not in FEATURES + EXTRA_FEATURES]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"features {list(names)} are not distinct names of "
                             f"{list(FEATURES + EXTRA_FEATURES)}")
        head = d.get("head", "step")        # files from before the snap head are steps
        if head not in HEADS:
            raise ValueError(f"head {head!r} is not one of {', '.join(HEADS)}")
        n = len(names)
        mean, std = np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32)
        layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in d["layers"]]
        width = n
        for w, b in layers:
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
                raise ValueError(f"a layer of shape {w.shape} does not follow {width} inputs")
            width = w.shape[0]
        if mean.shape != (n,) or std.shape != (n,) or not (std > 0).all():
            raise ValueError("its statistics do not fit the features")
        if width != HEADS[head]:
            raise ValueError(f"{width} outputs do not fit the {head} head ({HEADS[head]})")
        return cls(mean, std, layers, head, names)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, F) features -> (N, outputs) logits: :func:`perceptron` on the standardised
        features, computed as the same function with fewer passes over the pixels: the
        standardisation folded into the first layer, and each tanh written as a sigmoid
        (``tanh z = 2 sigmoid(2 z) - 1``: the 2s and the -1 folded into the layers around
        it), which the CPU computes 3.5x faster."""
        return perceptron(feats, self._folded(feats.device), torch.sigmoid_)

    def _folded(self, dev) -> list:
        """The layers of :meth:`logits`, on ``dev``."""
        layers = [(torch.as_tensor(w, device=dev), torch.as_tensor(b, device=dev))
                  for w, b in self.layers]
        w, b = layers[0]
        w = w / torch.as_tensor(self.std, device=dev)
        layers[0] = (w, b - w @ torch.as_tensor(self.mean, device=dev))
        for i in range(len(layers) - 1):
            (w, b), (w2, b2) = layers[i], layers[i + 1]
            layers[i], layers[i + 1] = (2 * w, 2 * b), (2 * w2, b2 - w2.sum(1))
        return layers

    def alpha(self, feats: torch.Tensor, coarse: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """(N, F) features and the two alphas (N,) of the same pixels -> their alpha (N,),
        clamped to [0, 1] (the fitter trains :func:`head_alpha` unclamped: a clamp has no
        gradient)."""
        out = torch.empty_like(coarse)
        layers = self._folded(feats.device)
        # in runs of rows whose hidden activations stay in the cache (a 6K frame's band at
        # once: 0.6 GB of them, and the perceptron bound by memory)
        for s in range(0, len(out), ROWS):
            sl = slice(s, s + ROWS)
            z = perceptron(feats[sl], layers, torch.sigmoid_)
            out[sl] = head_alpha(self.head, z, coarse[sl], full[sl])
        return out.clamp_(0, 1)

    def blend(self, image: np.ndarray, trimap: np.ndarray, coarse: np.ndarray,
              full: np.ndarray, device: torch.device | str = "cpu", cancel=None,
              progress=None) -> np.ndarray:
        """The blended alpha (H, W) float32; known trimap pixels are copied from the trimap.
        ``cancel()`` is polled before each tile (a tile takes a fraction of a second on a
        CPU; an 8K frame has dozens): True raises :class:`~nuke_hdmatt.errors.Cancelled`;
        ``progress(done, total, "detail")`` hears each tile done (of :func:`unknown_tiles`)."""
        h, w = trimap.shape
        out = trimap.astype(np.float32)
        dev = torch.device(device)
        size = tile_size(dev)
        tiles = unknown_tiles(trimap, dev)
        for done, (ty, tx) in enumerate(tiles, 1):
            unknown = trimap[ty:ty + size, tx:tx + size] == 0.5
            rows, cols = np.flatnonzero(unknown.any(1)), np.flatnonzero(unknown.any(0))
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            # the tile's unknown pixels' bounding box: a band crossing a tile fills
            # little of it (768 px tiles on a 6K frame with a 10 % band: half the pixels
            # measured, 2.5 -> 1.6 s)
            y0, y1 = ty + rows[0], ty + rows[-1] + 1
            x0, x1 = tx + cols[0], tx + cols[-1] + 1
            inner = np.s_[y0:y1, x0:x1]
            outer = np.s_[max(0, y0 - MARGIN):min(h, y1 + MARGIN),
                          max(0, x0 - MARGIN):min(w, x1 + MARGIN)]
            box = unknown[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            out[inner][box] = self._tile(
                image[outer], trimap[outer], coarse[outer], full[outer], dev,
                np.s_[y0 - outer[0].start:y1 - outer[0].start,
                      x0 - outer[1].start:x1 - outer[1].start], box)
            if progress is not None:
                progress(done, len(tiles), "detail")
        return out

    def _tile(self, image, trimap, coarse, full, dev, inner, unknown) -> np.ndarray:
        """The blend of the ``unknown`` pixels of ``inner`` (a slice of the tile)."""
        def up(a):
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)
        at = np.zeros(trimap.shape, bool)
        at[inner] = unknown
        feats = features(up(image).permute(2, 0, 1), up(trimap), up(coarse), up(full),
                         self.names, up(at).bool())
        # the wanted pixels in the same (raster) order as the measurements
        return self.alpha(feats.T, up(coarse[at]), up(full[at])).cpu().numpy()


def unknown_tiles(trimap: np.ndarray, device: torch.device | str = "cpu") -> list:
    """The (y, x) origins of the tiles :meth:`DetailModel.blend` measures on ``trimap``
    (those holding unknown pixels), in raster order; their count is a frame's progress
    part."""
    size = tile_size(torch.device(device))
    h, w = trimap.shape
    return [(ty, tx) for ty in range(0, h, size) for tx in range(0, w, size)
            if (trimap[ty:ty + size, tx:tx + size] == 0.5).any()]


def tile_size(device: torch.device) -> int:
    """The blend's tiles on ``device``: :data:`TILE` on the CPU, :data:`DEVICE_TILE` else."""
    return TILE if device.type == "cpu" else DEVICE_TILE


def perceptron(x: torch.Tensor, layers, between=torch.tanh) -> torch.Tensor:
    """(N, F) standardised features through ``layers`` [(weight, bias), ...] (tanh between
    them) -> (N, outputs) logits; the fitter trains the same function."""
    for i, (w, b) in enumerate(layers):
        x = torch.addmm(b, x, w.T)
        if i < len(layers) - 1:
            x = between(x)
    return x


def head_alpha(head: str, z: torch.Tensor, coarse: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """The alpha from a head's (N, outputs) logits ``z``: ``step`` blends
    ``coarse + sigmoid(z0) (full - coarse)``; ``snap`` then mixes that blend, 0 and 1 by the
    softmax of ``z1:4``, so it can clear a haze or fill a hole the blend keeps. The fitter
    trains the same function."""
    blend = coarse + torch.sigmoid(z[:, 0]) * (full - coarse)
    if head == "step":
        return blend
    # the softmax of three logits written out: torch's softmax over a dimension of 3 is
    # 3x slower on the CPU
    e = (z[:, 1:4] - z[:, 1:4].amax(dim=1, keepdim=True)).exp()
    return (e[:, 0] * blend + e[:, 2]) / e.sum(dim=1)
