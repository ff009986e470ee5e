"""Procedural foregrounds and backgrounds (numpy/scipy, seeded by the caller's Generator).

Thirteen real foregrounds cannot teach hair in general, so most of the hair the network sees
is drawn here: strands are curved paths with sub-pixel width, splatted as coverage (area per
pixel) and turned into alpha with ``1 - exp(-coverage)``, the transmittance of overlapping
random occluders. Foreground colour is the coverage-weighted mean of the strand colours, so
fg, alpha and composite agree exactly.

Every generator returns straight sRGB colour in 0-1 and alpha in 0-1 at the requested size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..strands import splat_bilinear
from .compositing import linear_to_srgb, merge_over, srgb_to_linear

__all__ = ["fractal_noise", "textured_colour", "blob_alpha", "render_strands",
           "furry_body", "hair_wisps", "soft_shapes", "procedural_background",
           "motion_blur"]


def fractal_noise(rng: np.random.Generator, shape, octaves: int = 5,
                  persistence: float = 0.55, base: int = 4) -> np.ndarray:
    """Smooth multi-scale noise, float32 (H, W) normalised to [0, 1].

    Octaves are summed at quarter resolution and enlarged once: detail finer than 4 px
    comes from the callers' grain, and this keeps a 576 px field under 10 ms.
    """
    h, w = shape
    sh, sw = max(2, h // 4), max(2, w // 4)
    out = np.zeros((sh, sw), np.float32)
    amp = 1.0
    for o in range(octaves):
        cells = base * 2 ** o
        gh = max(2, int(np.ceil(cells * sh / max(sh, sw))) + 1)
        gw = max(2, int(np.ceil(cells * sw / max(sh, sw))) + 1)
        if gh >= sh or gw >= sw:
            break
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = ndimage.zoom(grid, (sh / gh, sw / gw), order=3, grid_mode=True, mode="reflect")
        out += amp * up[:sh, :sw]
        amp *= persistence
    out = ndimage.zoom(out, (h / sh, w / sw), order=1, grid_mode=True, mode="nearest")[:h, :w]
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _random_colour(rng: np.random.Generator, palette: str | None = None) -> np.ndarray:
    """An sRGB colour; hair-like palettes most of the time, anything otherwise."""
    palette = palette or rng.choice(["hair", "hair", "any"])
    if palette == "hair":
        tones = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.17],
                          [0.80, 0.65, 0.42], [0.92, 0.88, 0.80], [0.55, 0.55, 0.55],
                          [0.55, 0.22, 0.10], [0.95, 0.95, 0.95]], np.float32)
        c = tones[int(rng.integers(len(tones)))] * rng.uniform(0.7, 1.25)
    else:
        c = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    return np.clip(c, 0.0, 1.0).astype(np.float32)


def textured_colour(rng: np.random.Generator, shape, palette: str | None = None) -> np.ndarray:
    """(H, W, 3) float32 sRGB colour field: two colours mixed by fractal noise plus grain."""
    a, b = _random_colour(rng, palette), _random_colour(rng, palette)
    t = fractal_noise(rng, shape, octaves=int(rng.integers(3, 7)))[..., None]
    grain = rng.uniform(0.0, 0.06)
    c = a * (1 - t) + b * t + grain * rng.standard_normal(tuple(shape) + (1,)).astype(np.float32)
    return np.clip(c, 0.0, 1.0).astype(np.float32)


def blob_alpha(rng: np.random.Generator, size: int, centre, radius: float,
               softness: float = 1.0, roughness: float = 0.25) -> np.ndarray:
    """Anti-aliased star-convex blob: radius modulated by a few random harmonics.

    ``softness`` is the edge ramp width in pixels (1 = a crisp, anti-aliased edge).
    Returns float32 (size, size) alpha in [0, 1].
    """
    alpha = np.zeros((size, size), np.float32)
    # Only the blob's bounding box is evaluated: bokeh backgrounds draw dozens of small ones.
    reach = radius * (1 + roughness) + 2 * softness + 2
    y0, y1 = max(0, int(centre[0] - reach)), min(size, int(centre[0] + reach) + 1)
    x0, x1 = max(0, int(centre[1] - reach)), min(size, int(centre[1] + reach) + 1)
    harmonics = [(roughness * radius * rng.uniform(0, 1) / k, k, rng.uniform(0, 2 * np.pi))
                 for k in range(2, 8)]
    if y1 <= y0 or x1 <= x0:
        return alpha
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    r = np.full_like(theta, radius)
    for amp, k, phase in harmonics:
        r += amp * np.sin(k * theta + phase)
    dist = np.sqrt(dx * dx + dy * dy)
    alpha[y0:y1, x0:x1] = np.clip(0.5 + (r - dist) / max(softness, 1e-3), 0.0, 1.0)
    return alpha


def render_strands(rng: np.random.Generator, size: int, roots: np.ndarray, angles: np.ndarray,
                   lengths: np.ndarray, widths: np.ndarray, colours: np.ndarray,
                   curl: float = 0.02, wave: float = 0.3, opacity: tuple[float, float] = (0.5, 1.0),
                   sigma: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Splat hair strands as coverage.

    Parameters
    ----------
    roots : (N, 2) float, y, x of each strand's root in pixels
    angles : (N,) float, initial direction in radians
    lengths : (N,) float, pixels
    widths : (N,) float, pixels at the root (sub-pixel widths are the point); tapers to 30 %
    colours : (N, 3) float sRGB 0-1
    curl : float, scale of the random curvature (radians per pixel)
    wave : float, amplitude (radians) of a sinusoidal wiggle along the strand
    sigma : float, Gaussian footprint (pixels) that anti-aliases the splats

    Returns
    -------
    (fg, alpha) : float32 (size, size, 3) sRGB 0-1 and float32 (size, size)
    """
    n = len(roots)
    step = 0.5
    n_steps = int(np.ceil(float(lengths.max()) / step)) if n else 0
    if n == 0 or n_steps == 0:
        return np.zeros((size, size, 3), np.float32), np.zeros((size, size), np.float32)
    s = np.arange(n_steps, dtype=np.float32)[None, :] * step                    # (1, S)
    k1 = rng.normal(0, curl, (n, 1)).astype(np.float32)
    # Curvature may change along the strand, by at most about one more `curl` over its length.
    k2 = (rng.normal(0, curl, (n, 1)) / lengths[:, None]).astype(np.float32)
    wave_len = rng.uniform(20, 120, (n, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1)).astype(np.float32)
    amp = rng.uniform(0, wave, (n, 1)).astype(np.float32)
    theta = (angles[:, None] + k1 * s + k2 * s * s
             + amp * np.sin(2 * np.pi * s / wave_len + phase))
    y = roots[:, 0:1] + np.cumsum(np.sin(theta) * step, axis=1)
    x = roots[:, 1:2] + np.cumsum(np.cos(theta) * step, axis=1)
    frac = s / lengths[:, None]
    alive = frac < 1.0
    op = rng.uniform(*opacity, (n, 1)).astype(np.float32)
    # Area of the strand segment this point stands for, tapering towards the tip.
    cover = widths[:, None] * (1.0 - 0.7 * frac) * step * op
    keep = alive & (y >= 0) & (y < size - 1) & (x >= 0) & (x < size - 1)
    y, x, cover = y[keep], x[keep], cover[keep]
    col = np.broadcast_to(srgb_to_linear(colours)[:, None, :], (n, n_steps, 3))[keep]
    # Darker roots, lighter tips: a cheap stand-in for self-shadowing in a hair volume.
    shade = (0.75 + 0.5 * np.broadcast_to(frac, (n, n_steps))[keep])[:, None]
    col = np.clip(col * shade, 0, 1)
    density, colour = splat_bilinear(y, x, cover, col, (size, size))
    density = ndimage.gaussian_filter(density, sigma)
    colour = np.stack([ndimage.gaussian_filter(colour[..., c], sigma) for c in range(3)], axis=-1)
    alpha = 1.0 - np.exp(-density)
    mean_lin = colour.sum(axis=(0, 1)) / max(density.sum(), 1e-9)
    lin = (colour + 1e-4 * mean_lin) / (density[..., None] + 1e-4)
    return linear_to_srgb(lin), alpha.astype(np.float32)


def _strand_colours(rng, n, base):
    jitter = rng.uniform(0.75, 1.25, (n, 1)) * rng.uniform(0.92, 1.08, (n, 3))
    return np.clip(base[None, :] * jitter, 0, 1).astype(np.float32)


def furry_body(rng: np.random.Generator, size: int,
               width_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A textured blob with fur or hair growing out of its boundary (animal, head, toy);
    strand widths 0.25-1.2 px times ``width_scale``."""
    centre = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.12, 0.35) * size
    body = blob_alpha(rng, size, centre, radius, softness=rng.uniform(0.8, 2.0),
                      roughness=rng.uniform(0.05, 0.4))
    hair_base = _random_colour(rng, "hair")
    body_fg = textured_colour(rng, (size, size), "hair")
    if rng.random() < 0.6:
        body_fg = np.clip(0.5 * body_fg + 0.5 * hair_base, 0, 1)
    n = int(rng.integers(300, 4000))
    t = rng.uniform(0, 2 * np.pi, n)
    depth = rng.uniform(0.75, 1.02, n)
    roots = np.stack([centre[0] + radius * depth * np.sin(t),
                      centre[1] + radius * depth * np.cos(t)], axis=1)
    # Mostly outward, combed towards a random direction, with per-strand scatter.
    comb = rng.uniform(0, 2 * np.pi)
    comb_w = rng.uniform(0, 0.7)
    angles = np.angle((1 - comb_w) * np.exp(1j * t) + comb_w * np.exp(1j * comb)) \
        + rng.normal(0, rng.uniform(0.1, 0.6), n)
    long_fur = rng.random() < 0.4
    lengths = rng.uniform(0.3, 1.0, n) * (rng.uniform(40, 200) if long_fur else rng.uniform(6, 45))
    widths = width_scale * np.exp(rng.normal(np.log(rng.uniform(0.25, 1.2)), 0.35, n))
    fg_h, a_h = render_strands(rng, size, roots.astype(np.float32), angles.astype(np.float32),
                               lengths.astype(np.float32), widths.astype(np.float32),
                               _strand_colours(rng, n, hair_base),
                               curl=rng.uniform(0.0, 0.03), wave=rng.uniform(0.0, 0.5))
    return merge_over(fg_h, a_h, body_fg, body)


def hair_wisps(rng: np.random.Generator, size: int,
               width_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Long flowing strands entering the frame (loose hair, flyaways, a fringe), 0.2-0.9 px
    wide times ``width_scale``. Roots lie
    beyond one side of the frame: hair growing out of empty air, along a straight root
    line, is not something a plate ever shows."""
    n = int(rng.integers(80, 1500))
    side = rng.uniform(0, 2 * np.pi)                 # where the hair comes from
    direction = side + np.pi + rng.normal(0, 0.35)   # roughly inward
    centre = np.array([size / 2, size / 2]) + 0.75 * size * np.array([np.sin(side), np.cos(side)])
    normal = side + np.pi / 2
    spread = rng.uniform(0.2, 1.0) * size
    u = rng.uniform(-0.5, 0.5, n) * spread
    roots = np.stack([centre[0] + u * np.sin(normal), centre[1] + u * np.cos(normal)], axis=1)
    roots += rng.normal(0, rng.uniform(1, 0.1 * size), roots.shape)
    angles = direction + rng.normal(0, rng.uniform(0.05, 0.4), n)
    lengths = (0.25 * size + rng.uniform(0.3, 1.0, n) * rng.uniform(0.4, 1.2) * size)
    widths = width_scale * np.exp(rng.normal(np.log(rng.uniform(0.2, 0.9)), 0.3, n))
    base = _random_colour(rng, "hair")
    return render_strands(rng, size, roots.astype(np.float32), angles.astype(np.float32),
                          lengths.astype(np.float32), widths.astype(np.float32),
                          _strand_colours(rng, n, base), curl=rng.uniform(0.0, 0.01),
                          wave=rng.uniform(0.0, 0.25), opacity=(0.3, 1.0))


def soft_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft-edged or semi-transparent objects with holes (smoke, veils, glass, defocus)."""
    alpha = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        a = blob_alpha(rng, size, rng.uniform(0.2, 0.8, 2) * size,
                       rng.uniform(0.1, 0.3) * size, softness=rng.uniform(1, 40),
                       roughness=rng.uniform(0.1, 0.6))
        if rng.random() < 0.5:
            # Semi-transparent: constant or noise-modulated partial opacity.
            a = a * rng.uniform(0.2, 0.9) * (1 - rng.uniform(0, 0.6) * fractal_noise(
                rng, (size, size), octaves=4))
        alpha = 1 - (1 - alpha) * (1 - a)
    for _ in range(int(rng.integers(0, 6))):
        hole = blob_alpha(rng, size, rng.uniform(0.2, 0.8, 2) * size,
                          rng.uniform(0.02, 0.1) * size, softness=rng.uniform(0.8, 6))
        alpha *= 1 - hole
    return textured_colour(rng, (size, size)), alpha.astype(np.float32)


def motion_blur(rng: np.random.Generator, fg: np.ndarray, alpha: np.ndarray,
                length: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Linear motion blur of a straight sRGB layer, done on premultiplied linear colour."""
    length = float(length if length is not None else rng.uniform(3, 24))
    angle = rng.uniform(0, np.pi)
    n = max(2, int(round(length)))
    offsets = np.linspace(-length / 2, length / 2, n)
    premult = srgb_to_linear(fg) * alpha[..., None]
    acc_c = np.zeros_like(premult)
    acc_a = np.zeros_like(alpha)
    for o in offsets:
        dy, dx = int(round(o * np.sin(angle))), int(round(o * np.cos(angle)))
        acc_c += np.roll(premult, (dy, dx), axis=(0, 1))
        acc_a += np.roll(alpha, (dy, dx), axis=(0, 1))
    acc_c /= n
    acc_a /= n
    lin = np.where(acc_a[..., None] > 1e-6, acc_c / np.maximum(acc_a, 1e-6)[..., None],
                   srgb_to_linear(fg))
    return linear_to_srgb(lin), acc_a.astype(np.float32)


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32 sRGB background: textured noise, gradients, defocused
    discs (bokeh) or stripes, mixed."""
    kind = int(rng.integers(3))
    if kind == 0:
        bg = textured_colour(rng, (size, size), "any")
    elif kind == 1:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
        bg = (1 - t) * _random_colour(rng, "any") + t * _random_colour(rng, "any")
        for _ in range(int(rng.integers(5, 40))):
            disc = blob_alpha(rng, size, rng.uniform(0, 1, 2) * size,
                              rng.uniform(0.01, 0.1) * size, softness=rng.uniform(1, 8),
                              roughness=0.02)
            bg = bg * (1 - disc[..., None] * 0.8) + disc[..., None] * 0.8 * _random_colour(rng, "any")
    else:
        period = rng.uniform(4, 60)
        a = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
        t = ndimage.gaussian_filter(t, rng.uniform(0, 3))[..., None]
        bg = (1 - t) * _random_colour(rng, "any") + t * _random_colour(rng, "any")
        bg = bg * (0.6 + 0.4 * fractal_noise(rng, (size, size))[..., None])
    return np.clip(bg, 0, 1).astype(np.float32)
