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
frame's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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
TILE = 256          # a 6K frame's 10 % band: 0.9 s against 1.1 s at 512 and 1.6 s at 768 (2 threads)
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
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
        n = c.shape[dim] - k
        x = (c.narrow(dim, k, n) - c.narrow(dim, 0, n)) / k
    return x + mean


def _grad(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of (H, W) by central differences (0 on the border rows/columns)."""
    gy, gx = torch.zeros_like(x), torch.zeros_like(x)
    gy[1:-1] = (x[2:] - x[:-2]) / 2
    gx[:, 1:-1] = (x[:, 2:] - x[:, :-2]) / 2
    return (gx * gx + gy * gy).sqrt()


def features(image: torch.Tensor, trimap: torch.Tensor, coarse: torch.Tensor,
             full: torch.Tensor, names: tuple[str, ...] = FEATURES) -> torch.Tensor:
    """(len(names), H, W) measurements of one block: image (3, H, W) in the network's
    input space, trimap, coarse and full (H, W), all float32 on one device; ``names`` from
    :data:`FEATURES` and :data:`EXTRA_FEATURES`."""
    d = full - coarse
    lum = image.mean(0)
    unknown = (trimap == 0.5).float()
    c_unc, f_unc = 4 * coarse * (1 - coarse), 4 * full * (1 - full)
    extended = not set(names) <= set(FEATURES)
    # one running-sum pass per window size over every map measured with it
    tex = [lum, lum * lum, coarse, full]
    reg = [d.abs(), unknown]
    wid = [d.abs(), (trimap == 1).float(), (trimap == 0).float()]
    if extended:
        tex += [d, d.abs(), *image, *(image * image)]
        reg += [c_unc, f_unc, lum, lum * lum, coarse, full, d]
        wid += [unknown]
    t = _box(torch.stack(tex), TEXTURE)
    r = _box(torch.stack(reg), REGION)
    w = _box(torch.stack(wid), WIDE)
    rows = [d, d.abs(), d * (2 * coarse - 1), r[0], w[0], coarse, full, c_unc, f_unc,
            (full - t[3]).abs(), (coarse - t[2]).abs(), (t[1] - t[0] * t[0]).clamp_min(0).sqrt(),
            r[1], w[1], w[2]]
    if extended:
        rows += [_grad(coarse), _grad(full), _grad(lum), r[2], r[3], t[4], t[5],
                 (r[5] - r[4] ** 2).clamp_min(0).sqrt(), r[6], r[7], w[3], r[8],
                 (t[9:12] - t[6:9] ** 2).clamp_min(0).sum(0).sqrt()]
    known = FEATURES + EXTRA_FEATURES
    return torch.stack([rows[known.index(n)] for n in names])


@dataclass
class DetailModel:
    """A perceptron (one hidden tanh layer, or none) from its standardised features
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
        """(N, F) features -> (N, outputs) logits."""
        dev = feats.device
        x = (feats - torch.as_tensor(self.mean, device=dev)) / torch.as_tensor(self.std, device=dev)
        return perceptron(x, [(torch.as_tensor(w, device=dev), torch.as_tensor(b, device=dev))
                              for w, b in self.layers])

    def alpha(self, feats: torch.Tensor, coarse: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """(N, F) features and the two alphas (N,) of the same pixels -> their alpha (N,),
        clamped to [0, 1] (the fitter trains :func:`head_alpha` unclamped: a clamp has no
        gradient)."""
        return head_alpha(self.head, self.logits(feats), coarse, full).clamp(0, 1)

    def blend(self, image: np.ndarray, trimap: np.ndarray, coarse: np.ndarray,
              full: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
        """The blended alpha (H, W) float32; known trimap pixels are copied from the trimap."""
        h, w = trimap.shape
        out = trimap.astype(np.float32).copy()
        dev = torch.device(device)
        for ty in range(0, h, TILE):
            for tx in range(0, w, TILE):
                unknown = trimap[ty:ty + TILE, tx:tx + TILE] == 0.5
                rows, cols = np.flatnonzero(unknown.any(1)), np.flatnonzero(unknown.any(0))
                if not len(rows):
                    continue
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
        return out

    def _tile(self, image, trimap, coarse, full, dev, inner, unknown) -> np.ndarray:
        """The blend of the ``unknown`` pixels of ``inner`` (a slice of the tile)."""
        def up(a):
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)
        c, f = up(coarse), up(full)
        feats = features(up(image).permute(2, 0, 1), up(trimap), c, f,
                         self.names)[(slice(None),) + inner]
        mask = up(unknown).bool()
        return self.alpha(feats.permute(1, 2, 0)[mask], c[inner][mask],
                          f[inner][mask]).cpu().numpy()


def perceptron(x: torch.Tensor, layers) -> torch.Tensor:
    """(N, F) standardised features through ``layers`` [(weight, bias), ...] (tanh between
    them) -> (N, outputs) logits; the fitter trains the same function."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = torch.tanh(x)
    return x


def head_alpha(head: str, z: torch.Tensor, coarse: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """The alpha from a head's (N, outputs) logits ``z``: ``step`` blends
    ``coarse + sigmoid(z0) (full - coarse)``; ``snap`` then mixes that blend, 0 and 1 by the
    softmax of ``z1:4``, so it can clear a haze or fill a hole the blend keeps. The fitter
    trains the same function."""
    blend = coarse + torch.sigmoid(z[:, 0]) * (full - coarse)
    if head == "step":
        return blend
    p = torch.softmax(z[:, 1:4], dim=1)
    return p[:, 0] * blend + p[:, 2]
