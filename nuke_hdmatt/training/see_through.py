"""Procedural see-through foregrounds: translucent fabric, meshes and smoke.

The failure modes measured on unseen images (issue 19) are large unknown regions, not thin
edges: a flag that is evenly semi-opaque over its whole area, a wire-mesh pen holder whose
regular holes fill the unknown band, smoke and glass whose alpha is a soft field. Hair and
fur (``procedural.py``) never show the network such regions, so a share of procedural
foregrounds is drawn from here.

Every generator returns straight sRGB colour (H, W, 3) and alpha (H, W), float32 in 0-1, at
the requested size; they are seeded by the caller's Generator.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .procedural import _random_colour, blob_alpha, fractal_noise, textured_colour

__all__ = ["translucent_fabric", "mesh", "smoke", "see_through_foreground", "SEE_THROUGH_KINDS",
           "on_a_pole"]


def _warp(rng: np.random.Generator, size: int, amplitude: float, scale: float):
    """Smooth displacement field (dy, dx) in pixels: the wave of a flag, a sagging net."""
    noise = lambda: (fractal_noise(rng, (size, size), octaves=3, base=max(2, int(scale))) - 0.5)
    return amplitude * noise(), amplitude * noise()


def _region(rng: np.random.Generator, size: int, cover: tuple[float, float] = (0.3, 0.85)) -> np.ndarray:
    """A large anti-aliased region (blob or rotated rectangle) holding the material."""
    if rng.random() < 0.5:
        return blob_alpha(rng, size, rng.uniform(0.35, 0.65, 2) * size,
                          rng.uniform(*cover) * size * 0.6, softness=rng.uniform(0.8, 3),
                          roughness=rng.uniform(0.05, 0.3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    a = rng.uniform(-0.4, 0.4)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    hw, hh = rng.uniform(*cover, 2) * size / 2
    inside = np.minimum(hw - np.abs(u), hh - np.abs(v))
    return np.clip(0.5 + inside / rng.uniform(0.8, 3), 0, 1).astype(np.float32)


def translucent_fabric(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A flag, veil or curtain: a large region of even partial opacity with a woven texture
    and folds, its colour often close to what lies behind it."""
    region = _region(rng, size)
    dy, dx = _warp(rng, size, rng.uniform(2, 0.04 * size), rng.uniform(2, 5))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = rng.uniform(0, np.pi)
    u = (xx + dx) * np.cos(a) + (yy + dy) * np.sin(a)
    v = -(xx + dx) * np.sin(a) + (yy + dy) * np.cos(a)
    period = rng.uniform(1.5, 6.0)
    weave = (np.sin(np.pi * u / period) ** 2) * (np.sin(np.pi * v / period) ** 2)
    opacity = rng.uniform(0.2, 0.9)
    folds = fractal_noise(rng, (size, size), octaves=4) - 0.5
    alpha = opacity * (1 - rng.uniform(0, 0.5) * weave) * (1 + rng.uniform(0, 0.5) * folds)
    if rng.random() < 0.3:
        # a hem or seam: an opaque band along part of the edge
        edge = ndimage.distance_transform_edt(region > 0.5)
        alpha = np.where(edge < rng.uniform(2, 12), 1.0, alpha)
    alpha = np.clip(alpha, 0, 1) * region
    colour = textured_colour(rng, (size, size), "any")
    shade = 1 + rng.uniform(0, 0.6) * folds[..., None]
    return np.clip(colour * shade, 0, 1).astype(np.float32), alpha.astype(np.float32)


def mesh(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Wire mesh, chain-link fence, grille or net: opaque wires with regular holes filling a
    large region, anti-aliased, rotated and gently warped."""
    region = _region(rng, size, cover=(0.4, 0.95))
    period = rng.uniform(5, 40)
    width = rng.uniform(0.6, min(6.0, period / 2.5))
    dy, dx = _warp(rng, size, rng.uniform(0, 0.5 * period), rng.uniform(2, 4))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = rng.uniform(0, np.pi)
    u = (xx + dx) * np.cos(a) + (yy + dy) * np.sin(a)
    v = -(xx + dx) * np.sin(a) + (yy + dy) * np.cos(a)
    kind = rng.choice(["grid", "diamond", "bars", "hex"])
    if kind == "diamond":
        u, v = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)

    def wires(t, p):
        dist = np.abs(((t / p) % 1.0) - 0.5) * p        # distance to the nearest wire's centre
        return np.clip(0.5 + (width / 2 - (p / 2 - dist)), 0, 1)

    if kind == "bars":
        cover = wires(u, period)
    elif kind == "hex":
        cover = np.maximum.reduce([wires(u * np.cos(t) + v * np.sin(t), period)
                                   for t in (0, np.pi / 3, 2 * np.pi / 3)])
    else:
        cover = 1 - (1 - wires(u, period)) * (1 - wires(v, period * rng.uniform(0.8, 1.25)))
    alpha = cover * rng.uniform(0.75, 1.0) * region
    palette = rng.choice(["metal", "any"])
    if palette == "metal":
        grey = rng.uniform(0.05, 0.85)
        base = np.clip(grey * rng.uniform(0.9, 1.1, 3), 0, 1).astype(np.float32)
        colour = np.clip(base + 0.15 * (fractal_noise(rng, (size, size)) - 0.5)[..., None], 0, 1)
    else:
        colour = textured_colour(rng, (size, size), "any")
    return colour.astype(np.float32), alpha.astype(np.float32)


def smoke(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smoke, steam or glass haze: a soft alpha field with no edge at all over large areas."""
    envelope = blob_alpha(rng, size, rng.uniform(0.3, 0.7, 2) * size,
                          rng.uniform(0.2, 0.45) * size, softness=rng.uniform(10, 0.25 * size),
                          roughness=rng.uniform(0.1, 0.5))
    density = fractal_noise(rng, (size, size), octaves=int(rng.integers(3, 6)))
    alpha = np.clip(envelope * density ** rng.uniform(0.5, 2.5) * rng.uniform(0.4, 1.2), 0, 1)
    if rng.random() < 0.5:
        colour = np.clip(_random_colour(rng, "any") * 0.3 + rng.uniform(0.5, 0.95), 0, 1)
        colour = np.broadcast_to(colour, (size, size, 3)) * (0.85 + 0.15 * density[..., None])
    else:
        colour = textured_colour(rng, (size, size), "any")
    return np.clip(colour, 0, 1).astype(np.float32), alpha.astype(np.float32)


SEE_THROUGH_KINDS = (("fabric", 0.4, translucent_fabric), ("mesh", 0.4, mesh), ("smoke", 0.2, smoke))


def see_through_foreground(rng: np.random.Generator, size: int):
    """(kind, fg, alpha): one of :data:`SEE_THROUGH_KINDS` by its weight."""
    names = [k for k, _, _ in SEE_THROUGH_KINDS]
    i = int(rng.choice(len(names), p=[p for _, p, _ in SEE_THROUGH_KINDS]))
    fg, alpha = SEE_THROUGH_KINDS[i][2](rng, size)
    return names[i], fg, alpha


def on_a_pole(rng: np.random.Generator, fg: np.ndarray, alpha: np.ndarray):
    """The layer held as a flag is: an opaque pole along one side of it, across the whole
    canvas. A real trimap marks such a holder as foreground, which anchors the classical
    solves; beside it they key a dark translucent fabric out (issue 19's flag), so the
    network has to learn to depart from its prior there."""
    size = alpha.shape[0]
    width = max(8, int(rng.uniform(0.03, 0.08) * size))
    covered = np.nonzero((alpha > 0.05).any(0))[0]
    lo, hi = (int(covered.min()), int(covered.max())) if len(covered) else (size // 2, size // 2)
    x0 = lo - width if lo >= width and (rng.random() < 0.5 or hi + width >= size) \
        else min(size - width, hi + 1)
    fg, alpha = fg.copy(), alpha.copy()
    fg[:, x0:x0 + width] = rng.uniform(0.05, 0.9, 3) * (0.8 + 0.2 * rng.random((size, 1, 1)))
    alpha[:, x0:x0 + width] = 1.0
    if rng.random() < 0.5:          # a horizontal pole: the same, transposed
        fg, alpha = fg.transpose(1, 0, 2), alpha.T
    return np.ascontiguousarray(fg, np.float32), np.ascontiguousarray(alpha, np.float32)
