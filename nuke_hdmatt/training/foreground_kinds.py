"""A random procedural foreground layer: which kind, drawn how often.

Hair, fur and soft shapes come from ``procedural.py``; translucent fabric, meshes and smoke
from ``see_through.py``. Every layer is returned as a
:class:`~nuke_hdmatt.training.sources.ForegroundSource` placed in its own canvas.
"""

from __future__ import annotations

import numpy as np

from .compositing import merge_over
from .procedural import furry_body, hair_wisps, motion_blur, soft_shapes
from .see_through import see_through_foreground
from .sources import ForegroundSource

__all__ = ["procedural_foreground"]

_KINDS = (("fur", 0.45), ("wisps", 0.25), ("soft", 0.2), ("fur+wisps", 0.1))


def _hair_foreground(rng: np.random.Generator, size: int):
    kind = str(rng.choice([k for k, _ in _KINDS], p=[p for _, p in _KINDS]))
    if kind == "fur":
        return kind, *furry_body(rng, size)
    if kind == "wisps":
        return kind, *hair_wisps(rng, size)
    if kind == "soft":
        return kind, *soft_shapes(rng, size)
    return kind, *merge_over(*hair_wisps(rng, size), *furry_body(rng, size))


def procedural_foreground(rng: np.random.Generator, size: int,
                          see_through: float = 0.0) -> ForegroundSource:
    """A random procedural foreground layer of (size, size).

    With probability ``see_through`` (drawn only when it is set, so older sample folders keep
    their seeds) a translucent fabric, mesh or smoke layer (``see_through.py``); otherwise
    a furry/hairy body (45 %), loose wisps (25 %), soft or semi-transparent shapes with
    holes (20 %), body plus wisps (10 %). 20 % get motion blur.
    """
    if see_through and rng.random() < see_through:
        kind, fg, alpha = see_through_foreground(rng, size)
    else:
        kind, fg, alpha = _hair_foreground(rng, size)
    if rng.random() < 0.2:
        fg, alpha = motion_blur(rng, fg, alpha)
    a8 = np.round(alpha * 255)
    unknown = np.argwhere((a8 > 0) & (a8 < 255)).astype(np.int32)
    if len(unknown) > 20000:
        unknown = unknown[rng.choice(len(unknown), 20000, replace=False)]
    return ForegroundSource(fg=fg, alpha=alpha, name=f"procedural-{kind}", unknown_yx=unknown,
                            in_place=True)
