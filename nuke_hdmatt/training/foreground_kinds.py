"""A random procedural foreground layer: which kind, drawn how often.

Hair, fur and soft shapes come from ``procedural.py``; translucent fabric, meshes and smoke
from ``see_through.py``. Every layer is returned as a
:class:`~nuke_hdmatt.training.sources.ForegroundSource` placed in its own canvas.
"""

from __future__ import annotations

import numpy as np

from .compositing import merge_over
from .procedural import furry_body, hair_wisps, motion_blur, soft_shapes
from .see_through import on_a_pole, see_through_foreground
from .sources import ForegroundSource

__all__ = ["procedural_foreground"]

_KINDS = (("fur", 0.45), ("wisps", 0.25), ("soft", 0.2), ("fur+wisps", 0.1))


PLATE_WIDTH_SCALE = (2.0, 3.5)
"""Strand width multiplier of plate-scale hair: 0.5-4 px strands, mostly 1-3 px, as hair is
on a 4K plate (the unscaled widths are sub-pixel, hair seen on an 800 px photo)."""


def _hair_foreground(rng: np.random.Generator, size: int, width_scale: float = 1.0):
    kind = str(rng.choice([k for k, _ in _KINDS], p=[p for _, p in _KINDS]))
    if kind == "fur":
        return kind, *furry_body(rng, size, width_scale)
    if kind == "wisps":
        return kind, *hair_wisps(rng, size, width_scale)
    if kind == "soft":
        return kind, *soft_shapes(rng, size)
    return kind, *merge_over(*hair_wisps(rng, size, width_scale),
                             *furry_body(rng, size, width_scale))


def procedural_foreground(rng: np.random.Generator, size: int, see_through: float = 0.0,
                          plate_scale: float = 0.0, flags: float = 0.0) -> ForegroundSource:
    """A random procedural foreground layer of (size, size).

    With probability ``see_through`` a translucent fabric, mesh or smoke layer
    (``see_through.py``); otherwise a furry/hairy body (45 %), loose wisps (25 %), soft or
    semi-transparent shapes with holes (20 %), body plus wisps (10 %), whose strands are
    plate-scale (:data:`PLATE_WIDTH_SCALE`) with probability ``plate_scale``. A share
    ``flags`` of the fabric is held on an opaque pole (kind ``flag``,
    :func:`~.see_through.on_a_pole`). 20 % get motion blur. Each probability is drawn only
    when it is set, so folders built before it existed keep their seeds.
    """
    if see_through and rng.random() < see_through:
        kind, fg, alpha = see_through_foreground(rng, size)
        if flags and kind == "fabric" and rng.random() < flags:
            kind, (fg, alpha) = "flag", on_a_pole(rng, fg, alpha)
    else:
        scale = float(rng.uniform(*PLATE_WIDTH_SCALE)) if plate_scale and rng.random() < plate_scale \
            else 1.0
        kind, fg, alpha = _hair_foreground(rng, size, scale)
    if rng.random() < 0.2:
        fg, alpha = motion_blur(rng, fg, alpha)
    a8 = np.round(alpha * 255)
    unknown = np.argwhere((a8 > 0) & (a8 < 255)).astype(np.int32)
    if len(unknown) > 20000:
        unknown = unknown[rng.choice(len(unknown), 20000, replace=False)]
    return ForegroundSource(fg=fg, alpha=alpha, name=f"procedural-{kind}", unknown_yx=unknown,
                            in_place=True)
