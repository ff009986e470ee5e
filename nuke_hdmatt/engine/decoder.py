"""Unpooling decoder with skip connections (DIM / IndexNet style)."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .encoder import conv_bn_relu

_PRIOR_EPS = 1e-4


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

    def forward(self, deep, context, feats, x, prior=None):
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
        y = self.up0(join(y, feats["s0"], x))
        # The head in float32 under autocast: its output is a logit added to the prior's, and
        # bf16's 8-bit mantissa there moved single alphas by 0.05 on the shipped weights
        # (H200, tests/test_engine_cuda.py); the cost is one 3x3 conv to one channel.
        with torch.autocast(y.device.type, enabled=False):
            out = self.head(y.float())
        if self.residual:
            out = out + logit(prior.float())
        return torch.sigmoid(out)
