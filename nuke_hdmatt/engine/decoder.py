"""Unpooling decoder with skip connections (DIM / IndexNet style)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .encoder import conv_bn_relu

_PRIOR_EPS = 1e-4
# The full-resolution layers run per tile, TILES x TILES a patch, skipping tiles without an
# unknown pixel: on the benchmarks' 6K frame about half the tiles of a query hold none.
TILES = 4
HALO = 3            # up0's two 3x3 convolutions and the head's: each widens the reach by 1
MAX_WANTED = 0.7    # above this share of wanted tiles the margins cost more than is skipped


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_PRIOR_EPS, 1 - _PRIOR_EPS)
    return torch.log(p) - torch.log1p(-p)


def _working_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype autocast runs convolutions in on ``t``'s device, else ``t``'s own."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else t.dtype


class Decoder(nn.Module):
    """Features at 1/8 -> alpha at full resolution in [0, 1].

    For variant D the last layer predicts a residual on the prior's logit and is
    zero-initialised, so an untrained network returns the prior.
    """

    def __init__(self, cfg: ModelConfig, context_channels: int):
        super().__init__()
        w, sw, dw = cfg.width, cfg.stem_width, cfg.decoder_width
        self.residual = cfg.uses_prior
        self.fuse = nn.Sequential(conv_bn_relu(cfg.aspp_width + context_channels, 2 * dw),
                                  conv_bn_relu(2 * dw, w))
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.up2 = nn.Sequential(conv_bn_relu(2 * w, w), conv_bn_relu(w, w))
        self.up1 = nn.Sequential(conv_bn_relu(2 * w, dw), conv_bn_relu(dw, sw))
        self.up0 = nn.Sequential(conv_bn_relu(2 * sw + cfg.in_channels, dw), conv_bn_relu(dw, dw))
        self.head = nn.Conv2d(dw, 1, 3, padding=1)
        if self.residual:
            nn.init.zeros_(self.head.weight)
            assert self.head.bias is not None
            nn.init.zeros_(self.head.bias)

    def forward(self, deep, context, feats, x, prior=None, tiles=None):
        """``tiles``: None, or a CPU bool tensor (B, TILES, TILES) marking the tiles of each
        patch whose alpha is wanted (:func:`wanted_tiles`); the full-resolution layers then
        run only there, and elsewhere the output is the prior (a zero residual)."""
        work = _working_dtype(deep)

        def join(*parts):
            # in the dtype the next convolution casts to anyway (the same numbers): autocast
            # keeps max-unpooling and the stem in float32, and a float32 join at full
            # resolution moved twice the bytes (on the CPU it took half as long as the
            # convolution after it)
            return torch.cat([t.to(work) for t in parts], dim=1)
        y = deep if context is None else join(deep, context)
        y = self.fuse(y)
        y = self.unpool(y, feats["idx2"], output_size=feats["s2"].shape[-2:])
        y = self.up2(join(y, feats["s2"]))
        y = self.unpool(y, feats["idx1"], output_size=feats["s1"].shape[-2:])
        y = self.up1(join(y, feats["s1"]))
        y = self.unpool(y, feats["idx0"], output_size=feats["s0"].shape[-2:])
        parts = [t.to(work) for t in (y, feats["s0"], x)]
        if tiles is None or bool(tiles.all()):
            out = self._last(torch.cat(parts, dim=1))
        else:
            out = self._last_tiled(parts, tiles)
        if self.residual:
            out = out + logit(prior.float())
        return torch.sigmoid(out)

    def _last(self, y, inside=None):
        """The full-resolution layers (up0 and the head) -> a logit; ``inside`` zeroes what
        lies past the patch after each layer, as the layers' zero padding does on a whole
        patch."""
        for block in self.up0:
            y = block(y)
            if inside is not None:
                y = y.mul_(inside.to(y.dtype))
        # The head in float32 under autocast: its output is a logit added to the prior's, and
        # bf16's 8-bit mantissa there moved single alphas by 0.05 on the shipped weights
        # (H200, tests/test_engine_cuda.py); the cost is one 3x3 conv to one channel.
        with torch.autocast(y.device.type, enabled=False):
            return self.head(y.float())

    def _last_tiled(self, parts, tiles):
        """:meth:`_last` on the wanted tiles only, each cut with a margin of :data:`HALO`
        pixels so its own pixels see what they see in the whole patch; 0 elsewhere."""
        b, _, h, w = parts[0].shape
        th, tw = h // TILES, w // TILES
        where = torch.nonzero(tiles)
        on_edge = bool(((where[:, 1:] == 0) | (where[:, 1:] == TILES - 1)).any())
        if parts[0].is_cuda:     # from pinned memory the copy does not wait for the device
            where = where.pin_memory().to(parts[0].device, non_blocking=True)
        pb, pi, pj = where.unbind(1)
        # each tile's pixel rows and columns, margins included; those past the patch are
        # clamped for the gather and zeroed afterwards, as the layers' padding is zero
        ys = pi[:, None] * th + torch.arange(-HALO, th + HALO, device=where.device)
        xs = pj[:, None] * tw + torch.arange(-HALO, tw + HALO, device=where.device)
        flat = ((pb[:, None, None] * h + ys.clamp(0, h - 1)[:, :, None]) * w
                + xs.clamp(0, w - 1)[:, None, :]).reshape(-1)
        # gathered pixel by pixel from the channels-last parts, joined per pixel: no copy of
        # the whole patch is made
        cut = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).index_select(0, flat)
                         for t in parts], dim=1)
        cut = cut.view(len(pb), th + 2 * HALO, tw + 2 * HALO, -1).permute(0, 3, 1, 2)
        inside = None
        if on_edge:
            inside = (((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :])
            inside = inside[:, None].to(cut.dtype)
            cut = cut.mul_(inside)
        logits = self._last(cut, inside)
        out = torch.zeros((b, 1, h, w), dtype=logits.dtype, device=cut.device)
        out.view(b, 1, TILES, th, TILES, tw).permute(0, 2, 4, 1, 3, 5)[pb, pi, pj] = \
            logits[:, :, HALO:HALO + th, HALO:HALO + tw]
        return out

def wanted_tiles(trimaps: np.ndarray) -> np.ndarray | None:
    """(B, TILES, TILES) bool: the tiles of each (B, H, W) patch trimap that hold an
    unknown pixel, whose alpha the engine keeps (it copies known pixels from the trimap);
    None where cutting tiles would not pay: most of them are wanted, or they are too small
    for their margin."""
    b, h, w = trimaps.shape
    if h % TILES or w % TILES or min(h, w) // TILES < 4 * HALO:
        return None
    wanted = (trimaps == 0.5).reshape(b, TILES, h // TILES, TILES, w // TILES).any(axis=(2, 4))
    return wanted if wanted.mean() <= MAX_WANTED else None
