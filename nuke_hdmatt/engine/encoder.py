"""ResNet encoder with dilated last stages (output stride 8) and ASPP.

Down-sampling uses 2x2 max-pools whose indices are kept, so the decoder can
unpool exactly where the encoder pooled (DIM / IndexNet style). Built from
scratch: no pretrained weights can be fetched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet BasicBlock; a 1x1 projection when the width changes."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None
        if cin != cout:
            self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x, deep=None):
        identity = x if self.project is None else self.project(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity, inplace=True)


def make_stage(cin: int, cout: int, blocks: int, dilation: int = 1) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, dilation)]
    layers += [BasicBlock(cout, cout, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated 3x3 branches + a global branch."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)] +
                                      [conv_bn_relu(cin, cout, 3, r) for r in rates])
        self.global_branch = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))
        self.merge = conv_bn_relu(cout * (len(rates) + 2), cout, 1)

    def forward(self, x, deep=None):
        outs = [b(x) for b in self.branches]
        g = self.global_branch(x.mean(dim=(2, 3), keepdim=True))
        outs.append(g.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.merge(torch.cat(outs, dim=1))


class Encoder(nn.Module):
    """Input (B, in_channels, H, W), H and W multiples of 8.

    Returns a dict: ``s0`` (full res), ``s1`` (1/2), ``s2`` (1/4) skip features,
    their pooling indices ``idx0..idx2``, and ``deep`` (ASPP output at 1/8). Given the
    ``deep`` of an earlier encode of the same ``x``, only the skips are computed: they cost
    about 7 % of the light configuration's encoder (the dilated 1/8 stages and ASPP the rest).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.stem = conv_bn_relu(cfg.in_channels, cfg.stem_width)
        self.stem2 = conv_bn_relu(cfg.stem_width, w)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.layer1 = make_stage(w, w, cfg.blocks[0])
        self.layer2 = make_stage(w, 2 * w, cfg.blocks[1])
        self.layer3 = make_stage(2 * w, 4 * w, cfg.blocks[2], cfg.dilations[0])
        self.layer4 = make_stage(4 * w, 8 * w, cfg.blocks[3], cfg.dilations[1])
        self.aspp = ASPP(8 * w, cfg.aspp_width, cfg.aspp_rates)

    def forward(self, x, deep=None):
        # The full-resolution stem in float32 under autocast: its output decides the max-pool
        # indices the decoder unpools with, and bf16's 8-bit mantissa ties many of them (alphas
        # moved by up to 0.049 against fp32 on an H200; 0.003 with the stem in float32 under
        # bf16 autocast on the CPU). One 3x3 convolution to a few channels.
        with torch.autocast(x.device.type, enabled=False):
            s0 = self.stem(x.float())
        p, idx0 = self.pool(s0)
        s1 = self.stem2(p)
        p, idx1 = self.pool(s1)
        s2 = self.layer1(p)
        p, idx2 = self.pool(s2)
        if deep is None:
            deep = self.aspp(self.layer4(self.layer3(self.layer2(p))))
        return {"s0": s0, "s1": s1, "s2": s2, "idx0": idx0, "idx1": idx1, "idx2": idx2, "deep": deep}
