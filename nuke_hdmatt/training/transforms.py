"""The synthesis chain as small transforms (GCA-Matting's data_generator shape).

A *scene* is a dict of full-size arrays (``fg``, ``alpha``, ``bg``, ``image``, ``trimap``,
``prior``) that each transform reads and extends; :class:`CropPatches` turns a scene into a
*sample* (query + context patches). Every transform takes the caller's
``np.random.Generator`` so a sample is a pure function of its seed.

Array conventions in a scene: colour (S, S, 3) float32 sRGB-encoded 0-1 (straight, not
premultiplied), alpha / trimap / prior (S, S) float32 0-1, trimap in {0, 0.5, 1}.
"""

from __future__ import annotations

import contextlib
import functools
import io

import numpy as np
from scipy import ndimage

from ..trimap_snap import RESAMPLED_TOLERANCE, snap
from .compositing import composite, linear_to_srgb, merge_over, srgb_to_linear
from .procedural import fractal_noise
from .resampling import reduce_blocks, resize, resize_area
from .sources import ForegroundSource

__all__ = ["PlaceForeground", "MergeForegrounds", "ColourOverlap", "ColourJitter", "BackgroundBlur",
           "Composite", "RandomTrimap", "ClosedFormPrior", "CropPatches", "Chain", "SAMPLE_KEYS"]

#: Arrays of a sample; patch axis first (index 0 = query, 1..P = context).
SAMPLE_KEYS = ("image", "trimap", "alpha", "fg", "bg", "prior")


class PlaceForeground:
    """Place a foreground source on an (S, S) canvas: random scale (never magnifying beyond
    ``source.max_scale``; that scale itself for a ``native`` source when ``native``),
    rotation within +-``max_rotation`` degrees, horizontal flip, and a random unknown pixel
    of the source landing in the middle half of the canvas.

    Shrinking by 2x or more goes through block averaging first, so thin hair keeps its
    coverage instead of aliasing away.
    """

    def __init__(self, size: int, max_rotation: float = 15.0, flip: bool = True,
                 min_fill: float = 0.6, native: bool = False):
        self.size = size
        self.max_rotation = max_rotation
        self.flip = flip
        self.min_fill = min_fill
        self.native = native

    def scale_range(self, source: ForegroundSource) -> tuple[float, float]:
        hi = source.max_scale
        lo = min(hi, self.min_fill * self.size / max(source.alpha.shape))
        return lo, hi

    def __call__(self, source: ForegroundSource, rng: np.random.Generator):
        size = self.size
        lo, hi = self.scale_range(source)
        if self.native and source.native:
            scale = hi          # a plate's own pixels: the detail the full-resolution pass sees
        else:
            scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        angle = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation))
        mirror = -1.0 if (self.flip and rng.random() < 0.5) else 1.0
        if len(source.unknown_yx):
            anchor = source.unknown_yx[int(rng.integers(len(source.unknown_yx)))].astype(float)
        else:
            anchor = np.array(source.alpha.shape, float) / 2
        target = rng.uniform(0.25, 0.75, 2) * size
        if source.in_place:
            target = anchor.copy()
        # canvas (y, x) -> source (y, x): src = anchor + A @ (dst - target)
        c, s = np.cos(angle), np.sin(angle)
        a_mat = np.array([[c, -s], [s, c]]) @ np.diag([1.0, mirror]) / scale
        corners = np.array([[0, 0], [0, size], [size, 0], [size, size]], float) - target
        src_pts = corners @ a_mat.T + anchor
        y0, x0 = np.floor(src_pts.min(axis=0)).astype(int) - 2
        y1, x1 = np.ceil(src_pts.max(axis=0)).astype(int) + 2
        factor = max(1, int(np.floor(1.0 / scale)))
        fg, alpha = source.region(y0, y1, x0, x1)
        fg, alpha = reduce_blocks(fg, factor), reduce_blocks(alpha, factor)
        # Block i covers source rows y0 + i f .. y0 + i f + f - 1, centred at + (f - 1) / 2.
        offset = (anchor - np.array([y0, x0]) - (factor - 1) / 2.0) / factor
        matrix = a_mat / factor
        shift = offset - matrix @ target
        out_a = ndimage.affine_transform(alpha, matrix, shift, output_shape=(size, size),
                                         order=1, mode="constant", cval=0.0)
        out_f = np.stack([ndimage.affine_transform(fg[..., ch], matrix, shift,
                                                   output_shape=(size, size), order=1,
                                                   mode="nearest") for ch in range(3)], -1)
        return np.clip(out_f, 0, 1).astype(np.float32), np.clip(out_a, 0, 1).astype(np.float32)


class MergeForegrounds:
    """With probability ``p``, merge a second placed foreground under the first (DIM's
    two-foreground augmentation), exact in linear light."""

    def __init__(self, p: float = 0.3):
        self.p = p

    def __call__(self, scene: dict, second, rng: np.random.Generator) -> dict:
        """``second`` is a zero-argument callable returning ``(fg, alpha)`` on the canvas;
        called only when the merge happens (placing costs time)."""
        if rng.random() < self.p:
            fg2, a2 = second()
            scene["fg"], scene["alpha"] = merge_over(scene["fg"], scene["alpha"], fg2, a2)
        return scene


class ColourOverlap:
    """With probability ``p``, pull the foreground's colours towards the background behind it
    (in linear light, by a share drawn from ``share``): foreground and background colours that
    overlap are where classical solvers fail and the network must not key the subject out
    (the dark flag over a dusk sky of issue 19).

    Drawn only when ``p`` is set, so folders built before it keep their seeds."""

    def __init__(self, p: float = 0.0, share=(0.3, 0.8)):
        self.p, self.share = p, share

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        if not self.p or rng.random() >= self.p:
            return scene
        fg, bg, alpha = scene["fg"], scene["bg"], scene["alpha"]
        weight = alpha[..., None] + 1e-6
        behind = (srgb_to_linear(bg) * weight).sum(axis=(0, 1)) / weight.sum(axis=(0, 1))
        t = np.float32(rng.uniform(*self.share))
        lin = srgb_to_linear(fg)
        scene["fg"] = linear_to_srgb((1 - t) * lin + t * behind[None, None, :]).astype(np.float32)
        return scene


class ColourJitter:
    """Per-channel gain, saturation and gamma changes in sRGB, applied to ``fg`` and/or
    ``bg`` with probability ``p`` each (independently drawn)."""

    def __init__(self, p: float = 0.5, gain: tuple[float, float] = (0.8, 1.2), saturation=(0.5, 1.4),
                 gamma=(0.75, 1.33)):
        self.p, self.gain, self.saturation, self.gamma = p, gain, saturation, gamma

    def jitter(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = rng.uniform(*self.gain, 3).astype(np.float32)
        sat = np.float32(rng.uniform(*self.saturation))
        gamma = np.float32(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        out = np.clip(rgb * gain, 0, 1)
        grey = out.mean(axis=-1, keepdims=True)
        out = np.clip(grey + sat * (out - grey), 0, 1)
        return (out ** gamma).astype(np.float32)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        for key in ("fg", "bg"):
            if rng.random() < self.p:
                scene[key] = self.jitter(scene[key], rng)
        return scene


class BackgroundBlur:
    """With probability ``p`` defocus the background (Gaussian, sigma from ``sigma`` px),
    as a lens focused on the subject does; real plates rarely have a sharp background,
    and a sharp one behind every training subject is a shortcut the network would learn."""

    def __init__(self, p: float = 0.25, sigma=(0.7, 5.0)):
        self.p, self.sigma = p, sigma

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        if rng.random() < self.p:
            s = float(rng.uniform(*self.sigma))
            scene["bg"] = ndimage.gaussian_filter(scene["bg"], (s, s, 0), mode="reflect")
        return scene


class Composite:
    """``image`` = ``fg`` over ``bg`` with ``alpha``, in linear light, encoded to sRGB.
    With probability ``noise_p`` adds sensor-like noise (in linear, scaled by signal) so the
    network does not learn that clean 8-bit gradients mean "composite"."""

    def __init__(self, noise_p: float = 0.3, noise_sigma=(0.002, 0.02)):
        self.noise_p, self.noise_sigma = noise_p, noise_sigma

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        image = composite(scene["fg"], scene["bg"], scene["alpha"])
        if rng.random() < self.noise_p:
            lin = srgb_to_linear(image)
            sigma = rng.uniform(*self.noise_sigma)
            noise = rng.standard_normal(lin.shape).astype(np.float32)
            image = linear_to_srgb(lin + sigma * np.sqrt(lin + 0.01) * noise)
        scene["image"] = image
        return scene


class RandomTrimap:
    """Trimap from the ground truth: the band 0 < alpha < 1 grown by a random radius into
    the foreground and (independently) into the background.

    Radii are in canvas pixels, drawn log-uniform from ``radius``; with ``irregular`` the
    radius also varies smoothly along the band, as a hand-painted trimap does. Alpha within
    ``eps`` of 0 / 1 is snapped where the trimap is known: run it before :class:`Composite`.
    """

    def __init__(self, radius=(2.0, 30.0), irregular: float = 0.5, eps: float = 1.0 / 512):
        self.radius, self.irregular, self.eps = radius, irregular, eps

    def _radius_field(self, shape, rng):
        lo, hi = np.log(self.radius[0]), np.log(self.radius[1])
        r = np.float32(np.exp(rng.uniform(lo, hi)))
        if rng.random() < self.irregular:
            return r * (0.5 + fractal_noise(rng, shape, octaves=3)).astype(np.float32)
        return np.full(shape, r, np.float32)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        alpha = scene["alpha"]
        fg = alpha >= 1.0 - self.eps
        bg = alpha <= self.eps
        # Distance (px) from each definite pixel to the nearest non-definite one; a pixel
        # stays definite only if it is farther than the local radius (>= 1, so the known
        # region of the trimap never holds a fractional alpha).
        dist_fg = ndimage.distance_transform_edt(fg)
        dist_bg = ndimage.distance_transform_edt(bg)
        r_fg = np.maximum(self._radius_field(alpha.shape, rng), 1.0)
        r_bg = np.maximum(self._radius_field(alpha.shape, rng), 1.0)
        trimap = np.full(alpha.shape, 0.5, np.float32)
        trimap[dist_fg > r_fg] = 1.0
        trimap[dist_bg > r_bg] = 0.0
        # Known pixels must hold exactly 0 / 1 (inference copies them from the trimap);
        # the snap moves alpha by at most eps, and runs before compositing.
        alpha = alpha.copy()
        alpha[trimap == 1.0] = 1.0
        alpha[trimap == 0.0] = 0.0
        scene["alpha"], scene["trimap"] = alpha, trimap
        return scene


def _classical(image: np.ndarray, trimap: np.ndarray, solver: str = "cf",
               device: str = "cpu") -> np.ndarray:
    from ..engine.prior import solve

    # PyMatting prints a "PERFORMANCE WARNING" when its incomplete Cholesky retries with a
    # shift; routine on composites, and thousands of them would bury the build's progress.
    with contextlib.redirect_stdout(io.StringIO()):
        return solve(image.astype(np.float32), trimap.astype(np.float32), solver, device)


def snap_shrunk_trimap(trimap: np.ndarray, height: int, width: int) -> np.ndarray:
    """``trimap`` area-shrunk to (height, width): a pixel is known only where its whole
    footprint was (as the engine snaps)."""
    return snap(resize_area(trimap, height, width), RESAMPLED_TOLERANCE)


class ClosedFormPrior:
    """``prior`` = PyMatting closed-form alpha of the whole composite (variant D input),
    computed the way inference computes it: sRGB image, trimap, known pixels exact
    (``solver`` as in :func:`nuke_hdmatt.engine.prior.solve`, e.g. "cf+knn").

    With probability ``downscale_p`` the solve runs on the scene area-shrunk by a factor
    from ``factors`` and is enlarged bilinearly, as the engine's global prior does on a
    plate larger than its solve size: the network must learn to restore the hair detail
    such a prior loses, not only to trust a full-resolution one.

    Of those shrunk scenes, a share ``cascade_p`` gets the engine's cascade prior instead:
    the network of ``cascade_weights`` run on the shrunk scene (with the classical prior
    there), its alpha enlarged by the engine's guided upsampling. That is what the
    full-resolution pass sees on a plate over 1024 px; trained only on classical priors, the
    network over-corrects that sharper prior
    and the full-resolution pass loses to the coarse pass it refines.
    """

    def __init__(self, downscale_p: float = 0.0, factors=(2, 3, 4), solver: str = "cf",
                 cascade_p: float = 0.0, cascade_weights: str = "", device: str = "cpu"):
        if cascade_p and not cascade_weights:
            raise ValueError("a cascade prior needs the weights of the network that makes it")
        self.downscale_p, self.factors, self.solver = downscale_p, tuple(factors), solver
        self.cascade_p, self.cascade_weights = cascade_p, cascade_weights
        self.device = device
        self._engine = None

    def _cascade_engine(self):
        if self._engine is None:
            from ..engine.runner import Engine
            # flip-averaged and not snapped to 0 and 1, as the cascade's coarse pass is
            self._engine = Engine.load(self.cascade_weights, device=self.device, prior="global",
                                       snap=0.0)
            if self._engine.cfg.prior_solver != self.solver:
                raise ValueError(f"cascade weights {self.cascade_weights} use the "
                                 f"{self._engine.cfg.prior_solver!r} prior, samples {self.solver!r}")
        return self._engine

    def __call__(self, scene: dict, rng: np.random.Generator | None = None) -> dict:
        image, trimap = scene["image"], scene["trimap"]
        if rng is None or not self.downscale_p or rng.random() >= self.downscale_p:
            scene["prior"] = _classical(image, trimap, self.solver, self.device)
            return scene
        f = int(self.factors[int(rng.integers(len(self.factors)))])
        h, w = trimap.shape
        sh, sw = max(8, round(h / f)), max(8, round(w / f))
        small_tri = snap_shrunk_trimap(trimap, sh, sw)
        small_img = resize_area(image, sh, sw)
        small = _classical(small_img, small_tri, self.solver, self.device)
        # drawn only when asked for, so seeds of folders without cascade priors stay valid
        if self.cascade_p and rng.random() < self.cascade_p:
            from ..engine.guided import guided_upsample
            coarse = self._cascade_engine().matte(np.clip(small_img, 0, 1), small_tri, prior=small)
            prior = guided_upsample(coarse, small_img, image, trimap)    # as the engine enlarges it
        else:
            prior = np.clip(resize(small, h, w), 0.0, 1.0)
        prior[trimap == 1.0] = 1.0
        prior[trimap == 0.0] = 0.0
        scene["prior"] = prior.astype(np.float32)
        return scene


class CropPatches:
    """Scene -> sample: one crop side ``c`` from ``crop_sizes`` for the whole sample; the
    query is a c x c window around a random unknown pixel; every window is area-resized to
    ``patch``.

    The ``n_context`` context windows are chosen as inference chooses them (``context =
    "frame"``, the default): the scene is cut into the engine's grid at side ``c`` (its
    overlap scaled to ``c``), the cells holding unknown pixels and the clean cells bordering
    one that lacks a region they hold are the candidates
    (:func:`~nuke_hdmatt.engine.pool.border_cells`), and
    :func:`~nuke_hdmatt.engine.pool.candidates` picks ``n_context`` of them around the query
    (the nearest first, then strata spread over the scene); the cell the query sits on is
    not a candidate, as a query is not its own. Where the scene holds fewer candidates, the
    rest are random windows. ``context = "random"``: all random windows (folders built
    before the rule existed).

    Colour is resized in linear light. A resized trimap pixel is known only when its whole
    footprint was known, and alpha/prior are then set exactly, so known pixels never carry
    fractional alpha.

    Returns a dict of arrays with the patch axis first: ``image``, ``fg``, ``bg``
    (P+1, 3, patch, patch) float32 sRGB 0-1; ``trimap``, ``alpha`` and (when the scene has
    one) ``prior`` (P+1, patch, patch) float32; ``boxes`` (P+1, 3) int32 (y, x, side) in scene
    pixels.
    """

    CONTEXT_RULES = ("frame", "random")

    def __init__(self, patch: int, crop_sizes=(320, 480, 640), n_context: int = 4,
                 context: str = "frame"):
        if context not in self.CONTEXT_RULES:
            raise ValueError(f"context rule must be one of {self.CONTEXT_RULES}, got {context!r}")
        self.patch, self.crop_sizes, self.n_context = patch, tuple(crop_sizes), n_context
        self.context = context

    def grid_context(self, trimap: np.ndarray, query: tuple) -> list:
        """Up to ``n_context`` windows (y, x) of side ``query[2]`` chosen by the engine's rule."""
        from ..engine.pool import border_cells, candidates
        from ..engine.regions import clean_regions
        from ..engine.settings import InferenceSettings
        size, side = trimap.shape[0], int(query[2])
        defaults = InferenceSettings()
        stride = max(1, side - round(side * defaults.overlap / defaults.patch))
        starts = sorted(set(range(0, size - side, stride)) | {size - side})
        unknown = trimap == 0.5
        queries = [(r, c) for r, y in enumerate(starts) for c, x in enumerate(starts)
                   if unknown[y:y + side, x:x + side].any()]
        # a feature cell is 8 px of the resized patch: 8 * side / patch pixels of the scene
        block = max(1, round(8 * side / self.patch))

        @functools.cache
        def regions(cell):
            y, x = starts[cell[0]], starts[cell[1]]
            return clean_regions(trimap[y:y + side, x:x + side], block)
        cells = queries + border_cells(queries, (len(starts), len(starts)), regions)
        # in strides, so distances compare with the query's own (off-grid) position
        at = {(starts[r] / stride, starts[c] / stride): (starts[r], starts[c]) for r, c in cells}
        qy, qx = query[0] / stride, query[1] / stride
        own = min(at, key=lambda p: (p[0] - qy) ** 2 + (p[1] - qx) ** 2, default=None)
        if own is not None and (own[0] - qy) ** 2 + (own[1] - qx) ** 2 < 0.25:
            del at[own]
        return [at[p] for p in candidates((qy, qx), list(at), self.n_context)]

    def windows(self, trimap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = trimap.shape[0]
        choices = [c for c in self.crop_sizes if c <= size] or [size]
        side = int(choices[int(rng.integers(len(choices)))])
        unknown = np.argwhere(trimap == 0.5)
        if len(unknown):
            cy, cx = unknown[int(rng.integers(len(unknown)))]
        else:
            cy, cx = rng.integers(0, size, 2)
        y = int(np.clip(cy - side // 2 + rng.integers(-side // 4, side // 4 + 1), 0, size - side))
        x = int(np.clip(cx - side // 2 + rng.integers(-side // 4, side // 4 + 1), 0, size - side))
        boxes = [(y, x, side)]
        if self.context == "frame":
            boxes += [(cy, cx, side) for cy, cx in self.grid_context(trimap, (y, x, side))]
        while len(boxes) < self.n_context + 1:
            boxes.append((int(rng.integers(0, size - side + 1)),
                          int(rng.integers(0, size - side + 1)), side))
        return np.array(boxes, np.int32)

    def _resize(self, arr, linear):
        """``arr`` is a window of a linear-light scene array when ``linear``."""
        if linear:
            if arr.shape[0] == self.patch:
                return linear_to_srgb(arr)
            return linear_to_srgb(resize_area(arr, self.patch, self.patch))
        if arr.shape[0] == self.patch:
            return np.array(arr, np.float32)
        return resize_area(arr, self.patch, self.patch)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        boxes = self.windows(scene["trimap"], rng)
        out: dict[str, list] = {k: [] for k in SAMPLE_KEYS if k in scene}
        # Decoded once per scene and kept in it: several samples may be cut from one scene.
        linear = scene.setdefault("_linear", {})
        for k in ("image", "fg", "bg"):
            if k not in linear:
                linear[k] = srgb_to_linear(scene[k])
        for y, x, side in boxes:
            win = {k: scene[k][y:y + side, x:x + side] for k in out}
            win.update({k: linear[k][y:y + side, x:x + side] for k in linear})
            tri = win["trimap"]
            if side == self.patch:
                known_fg, known_bg = tri == 1.0, tri == 0.0
            else:
                known_fg = resize_area((tri == 1.0).astype(np.float32), self.patch, self.patch) > 1 - 1e-4
                known_bg = resize_area((tri == 0.0).astype(np.float32), self.patch, self.patch) > 1 - 1e-4
            trimap = np.full((self.patch, self.patch), 0.5, np.float32)
            trimap[known_fg], trimap[known_bg] = 1.0, 0.0
            out["trimap"].append(trimap)
            for k in ("image", "fg", "bg"):
                out[k].append(np.clip(self._resize(win[k], True), 0, 1).transpose(2, 0, 1))
            for k in ("alpha", "prior"):
                if k in out:
                    a = np.clip(self._resize(win[k], False), 0, 1)
                    a[known_fg], a[known_bg] = 1.0, 0.0
                    out[k].append(a)
        sample = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
        sample["boxes"] = boxes
        return sample


class Chain:
    """Apply scene transforms in order: ``scene = t(scene, rng)`` for each."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, scene: dict, rng: np.random.Generator) -> dict:
        for t in self.transforms:
            scene = t(scene, rng)
        return scene
