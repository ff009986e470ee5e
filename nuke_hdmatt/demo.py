"""``hdmatt demo``: the whole chain on a generated furry plate, no data needed.

The plate is procedural and deterministic (same pixels on every machine): a soft-edged body
with a few thousand thin, curved, sub-pixel hair strands, composited in linear light over a
textured background, 640x480, written as a linear Rec.709 EXR (tagged ``lin_rec709_scene``)
with its trimap. It then runs exactly the ``hdmatt matte --foreground`` code path and writes
the alpha EXR (with the estimated foreground colour in layer ``fg``) plus a preview PNG
(plate | trimap | alpha | the foreground over a checkerboard | the plate premultiplied by
the alpha over it, for comparison: the old background shows through the fur there).

Strand rendering: each strand is marched in 0.5 px steps and splatted as coverage
(:mod:`nuke_hdmatt.strands`, as the training generator does).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from scipy import ndimage

from .strands import splat_bilinear

__all__ = ["make_plate", "run_demo"]

WIDTH, HEIGHT = 640, 480
SEED = 20210202  # HDMatt's arXiv year and month, nothing more
PLATE_COLORSPACE = "lin_rec709_scene"
STRANDS = 2600
STEP_PX = 0.5
CHECKER_PX = 16
CHECKER_LINEAR = (0.52, 0.17)  # about 0.75 and 0.45 once sRGB-encoded
KNOWN_MARGIN_PX = 4.0


def _noise(rng, shape, sigma):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _background(rng):
    h, w = HEIGHT, WIDTH
    mix = 0.5 + 0.22 * _noise(rng, (h, w), 40) + 0.12 * _noise(rng, (h, w), 9) \
        + 0.05 * _noise(rng, (h, w), 2)
    leaf = np.array([0.05, 0.16, 0.04], np.float32)
    sky = np.array([0.30, 0.42, 0.55], np.float32)
    bg = leaf + np.clip(mix, 0, 1)[..., None] * (sky - leaf)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(18):  # out-of-focus highlights: strong colour edges near the hair
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        bg += blob[..., None] * rng.uniform(0.3, 1.2) * np.array([1.0, 0.9, 0.7], np.float32)
    return bg.astype(np.float32)


def _strands(rng, cx, cy, a, b):
    """Hair density and colour-weighted density (H x W, H x W x 3)."""
    h, w = HEIGHT, WIDTH
    n = STRANDS
    theta = rng.uniform(0, 2 * np.pi, n)
    root_r = rng.uniform(0.85, 1.0, n)
    x = cx + a * root_r * np.cos(theta)
    y = cy + b * root_r * np.sin(theta)
    # outward normal of the ellipse, tilted, then bent by per-strand curl and gravity
    phi = np.arctan2(np.sin(theta) / b, np.cos(theta) / a) + rng.normal(0, 0.35, n)
    curl = rng.normal(0, 0.012, n)
    length = rng.uniform(25, 115, n)
    width = rng.uniform(0.25, 0.9, n)
    colour = np.array([0.32, 0.19, 0.09], np.float32) * rng.uniform(0.5, 1.8, (n, 1))
    colour[rng.random(n) < 0.15] = [0.75, 0.66, 0.52]  # a few pale guard hairs
    points = []  # (y, x, area, colour) of the live strands at each step
    steps = int(length.max() / STEP_PX)
    for i in range(steps):
        along = i * STEP_PX
        alive = along < length
        if not alive.any():
            break
        taper = np.clip(1.0 - along / length, 0.0, 1.0) ** 0.7
        points.append((y[alive], x[alive], (width * taper * STEP_PX)[alive], colour[alive]))
        phi = phi + curl + rng.normal(0, 0.02, n)
        x = x + STEP_PX * np.cos(phi)
        y = y + STEP_PX * (np.sin(phi) + 0.15 * along / length)  # tips droop
    y, x, area, colours = (np.concatenate(part) for part in zip(*points))
    return splat_bilinear(y, x, area, colours, (h, w))


def make_plate(seed: int = SEED):
    """Generate the demo shot.

    Returns
    -------
    plate : ndarray
        float32 (480, 640, 3), linear Rec.709 scene-referred (composited in linear light).
    trimap : ndarray
        float32 (480, 640), 0 / 0.5 / 1.
    alpha : ndarray
        float32 (480, 640) in [0, 1], the exact coverage the plate was composited with.
    """
    rng = np.random.default_rng(seed)
    h, w = HEIGHT, WIDTH
    bg = _background(rng)
    cx, cy, a, b = w * 0.5, h * 0.62, 150.0, 128.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
    body_a = np.clip((1.0 - r) * min(a, b) / 1.5 + 0.5, 0.0, 1.0)
    body_f = np.array([0.22, 0.13, 0.06], np.float32) * (1 + 0.25 * _noise(rng, (h, w), 3))[..., None]
    density, coloured = _strands(rng, cx, cy, a, b)
    hair_a = 1.0 - np.exp(-density)
    hair_f = coloured / np.maximum(density, 1e-12)[..., None]
    alpha = hair_a + (1.0 - hair_a) * body_a
    premult = hair_a[..., None] * hair_f + ((1.0 - hair_a) * body_a)[..., None] * body_f
    plate = premult + (1.0 - alpha)[..., None] * bg
    fg_known = ndimage.distance_transform_edt(alpha >= 0.999) > KNOWN_MARGIN_PX
    bg_known = ndimage.distance_transform_edt(alpha <= 0.001) > KNOWN_MARGIN_PX
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[fg_known] = 1.0
    trimap[bg_known] = 0.0
    return plate.astype(np.float32), trimap, alpha.astype(np.float32)


def _write_image(path: str, pixels: np.ndarray, channels, *, colorspace: str | None = None,
                 fmt: str = "half") -> None:
    """Write an image via a temp file and rename (demo inputs and preview only)."""
    import OpenImageIO as oiio

    from .atomic import atomic_path
    from .errors import OutputError
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], fmt)
    spec.channelnames = tuple(channels)
    if colorspace:
        spec.attribute("oiio:ColorSpace", colorspace)
    if path.endswith(".exr"):
        spec.attribute("compression", "zip")
    with atomic_path(path, os.path.splitext(path)[1]) as tmp:
        out = oiio.ImageOutput.create(path)
        if out is None or not out.open(tmp, spec) or \
                not out.write_image(np.ascontiguousarray(pixels, np.float32)) or not out.close():
            raise OutputError(f"cannot write: {oiio.geterror()}", path=path)


def checker_comp(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Unpremultiplied ``colour`` (float32 (H, W, 3), linear) over a checkerboard, in linear
    light: float32 (H, W, 3), linear."""
    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w]
    checker = np.where(((yy // CHECKER_PX) + (xx // CHECKER_PX)) % 2, *CHECKER_LINEAR)
    a = alpha[..., None]
    return (a * colour + (1 - a) * checker[..., None]).astype(np.float32)


def preview(plate_display: np.ndarray, trimap: np.ndarray, alpha: np.ndarray,
            comp_foreground: np.ndarray, comp_plate: np.ndarray) -> np.ndarray:
    """Side-by-side preview: plate | trimap | alpha | foreground comp | plate comp.

    Parameters
    ----------
    plate_display, comp_foreground, comp_plate : ndarray
        float32 (H, W, 3), sRGB-encoded Rec.709 in [0, 1]: the plate, and the two
        :func:`checker_comp` results (estimated foreground; the plate itself) encoded.
    trimap, alpha : ndarray
        float32 (H, W) in [0, 1].

    Returns
    -------
    ndarray
        float32 (H, 5W, 3), display-referred sRGB in [0, 1].
    """
    grey = lambda m: np.repeat(m[..., None], 3, axis=2)
    panels = [plate_display, grey(trimap), grey(alpha), comp_foreground, comp_plate]
    return np.concatenate([np.clip(p, 0, 1).astype(np.float32) for p in panels], axis=1)


def run_demo(output_dir: str, settings) -> int:
    """Generate the shot into ``output_dir``, matte it like ``hdmatt matte``, preview it.

    ``settings`` is the :class:`~nuke_hdmatt.shot.workflow.RunSettings` of the run (weights,
    device, cache, quiet, JSON log). Returns the exit code.
    """
    from .errors import UsageError
    from .shot.matte import make_folder, remove_created
    from .shot.workflow import check_engine_files

    # a failed run leaves nothing behind: refuse what the engine would before writing,
    # and remove what this run wrote (never an earlier demo's files) when it fails anyway
    folder = os.path.abspath(output_dir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError("-o: is a file, not a folder", path=output_dir)
    check_engine_files(settings.engine)
    try:
        created = make_folder(folder)
    except OSError as exc:
        raise UsageError(f"-o: cannot create the folder: {exc.strerror or exc}",
                         path=output_dir) from None
    paths = {name: os.path.join(folder, name) for name in
             ("plate.exr", "trimap.exr", "alpha_truth.exr", "alpha.exr", "preview.png")}
    new = [path for path in paths.values() if not os.path.lexists(path)]

    def discard() -> None:
        for path in new:
            try:
                os.unlink(path)
            except OSError:
                pass  # not written before the failure
        remove_created(created)

    try:
        rc = _demo(folder, paths, settings)
    except BaseException:
        discard()
        raise
    if rc != 0:
        discard()
    return rc


def _demo(folder: str, paths: dict, settings) -> int:
    from .imaging import read_plate, resolve_config, to_network_space
    from .imaging.writing import check_output_location
    from .metrics import sad
    from .shot.plan import MatteJob
    from .shot.workflow import run_matte

    check_output_location(paths["plate.exr"])
    say = (lambda *a: None) if settings.quiet else (lambda text: print(text, file=sys.stderr))
    say(f"hdmatt demo: generating a {WIDTH}x{HEIGHT} furry plate in {folder}")
    plate, trimap, truth = make_plate()
    _write_image(paths["plate.exr"], plate, ("R", "G", "B"), colorspace=PLATE_COLORSPACE)
    _write_image(paths["trimap.exr"], trimap, ("Y",))
    _write_image(paths["alpha_truth.exr"], truth, ("Y",), fmt="float")

    job = MatteJob(plate=paths["plate.exr"], trimap=paths["trimap.exr"], output=paths["alpha.exr"],
                   foreground="fg")
    rc = run_matte(job, settings)
    if rc != 0:
        return rc

    alpha = read_plate(paths["alpha.exr"], ["A"]).pixels[:, :, 0]
    fg = read_plate(paths["alpha.exr"], ["fg.R", "fg.G", "fg.B"]).pixels  # linear, as the plate
    config, _ = resolve_config(None)
    shown = lambda rgb: to_network_space(rgb, PLATE_COLORSPACE, config)
    panels = preview(shown(plate), trimap, alpha, shown(checker_comp(fg, alpha)),
                     shown(checker_comp(plate, alpha)))
    _write_image(paths["preview.png"], panels, ("R", "G", "B"), fmt="uint8")
    error = sad(alpha, truth, trimap)
    lines = [
        f"plate    {paths['plate.exr']}  (linear Rec.709, {PLATE_COLORSPACE})",
        f"trimap   {paths['trimap.exr']}",
        f"truth    {paths['alpha_truth.exr']}  (the alpha the plate was built with)",
        f"alpha    {paths['alpha.exr']}  (plate channels + A + foreground colour fg.R/G/B)",
        f"preview  {paths['preview.png']}  (plate | trimap | alpha | foreground over checkerboard"
        f" | plate premultiplied over checkerboard)",
        f"SAD against the true alpha over the unknown region: {error:.2f}",
    ]
    print("\n".join(lines))
    return 0
