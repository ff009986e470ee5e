"""Fold BatchNorm into the preceding convolution for inference.

At inference BatchNorm is a fixed per-channel affine map, so it can live in the
convolution's weights and bias: one pass over each feature map instead of two.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair of an eval-mode ``module`` in place; returns it."""
    for child in module.children():
        fold_batchnorm(child)
    conv: nn.Module | None
    bn: nn.Module | None
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
    for conv_name, bn_name in _PAIRS:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
    return module
