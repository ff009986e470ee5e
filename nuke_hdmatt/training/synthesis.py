"""One training sample from a seed: the synthesis chain wired together with its defaults.

``SampleSynthesizer(config)(rng)`` builds a composite scene of ``scene_size`` pixels and
returns a sample (query + context patches, see :class:`~.transforms.CropPatches`). Defaults
live only in :class:`SynthesisConfig`; overrides with unknown keys are rejected.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..errors import HDMattError, UsageError
from . import VALIDATION_IMAGES
from .foreground_kinds import procedural_foreground
from .procedural import procedural_background
from .sources import BackgroundBank, DevForegrounds
from .transforms import (
    BackgroundBlur,
    Chain,
    ClosedFormPrior,
    ColourJitter,
    ColourOverlap,
    Composite,
    CropPatches,
    MergeForegrounds,
    PlaceForeground,
    RandomTrimap,
)

__all__ = ["SynthesisConfig", "SampleSynthesizer"]

log = logging.getLogger(__name__)


@dataclass
class SynthesisConfig:
    """Every knob of data synthesis (pixels are scene pixels unless stated).

    ``scene_size`` 0 means ``max(crop_sizes) + patch``, big enough that context windows are
    not all copies of the query at the largest crop.
    """

    patch: int = 320
    crop_sizes: tuple = (320, 480, 640)
    scene_size: int = 0
    n_context: int = 4
    context_rule: str = "frame"
    procedural_probability: float = 0.5
    see_through_probability: float = 0.0
    flag_probability: float = 0.0
    plate_strand_probability: float = 0.3
    colour_overlap_probability: float = 0.0
    merge_probability: float = 0.3
    procedural_background_probability: float = 0.2
    highres_probability: float = 0.5
    highres_native: bool = True
    max_rotation: float = 15.0
    trimap_radius: tuple = (2.0, 30.0)
    jitter_probability: float = 0.5
    background_blur_probability: float = 0.25
    noise_probability: float = 0.3
    prior: bool = False
    prior_downscale_probability: float = 0.0
    prior_downscale_factors: tuple = (2, 3, 4)
    prior_solver: str = "cf"
    prior_cascade_probability: float = 0.0
    prior_cascade_weights: str = ""
    prior_cascade_sha256: str = ""
    holdout: tuple = field(default_factory=lambda: tuple(VALIDATION_IMAGES))

    #: What a setting was before it existed: a folder whose manifest lacks it was built so.
    LEGACY = {"context_rule": "random", "highres_native": False, "plate_strand_probability": 0.0}

    @property
    def canvas(self) -> int:
        return int(self.scene_size or max(self.crop_sizes) + self.patch)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict) -> "SynthesisConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown synthesis setting(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)

    @classmethod
    def for_patch(cls, patch: int, **overrides) -> "SynthesisConfig":
        """Crops of 1x, 1.5x and 2x the patch (the paper's 320/480/640 for 320)."""
        crops = (patch, patch * 3 // 2, patch * 2)
        return cls.from_dict({"patch": patch, "crop_sizes": crops, **overrides})


class SampleSynthesizer:
    """Seeded sample generator.

    Parameters
    ----------
    config : SynthesisConfig
    dev : DevForegrounds, optional
        Default: the shared alphamatting-dev images minus ``config.holdout``. When the shared
        data is missing, only procedural foregrounds/backgrounds are used (with a warning).
    backgrounds : BackgroundBank, optional
    device : str
        Torch device of the prior solve and of the foreground-colour estimate (not part of
        the configuration: it changes the speed, not the data beyond float rounding).
    """

    def __init__(self, config: SynthesisConfig | None = None, dev=None, backgrounds=None,
                 device: str = "cpu"):
        self.config = config or SynthesisConfig()
        c = self.config
        if dev is None:
            try:
                dev = DevForegrounds(holdout=c.holdout, highres_probability=c.highres_probability,
                                     device=device)
            except HDMattError as exc:
                warnings.warn(f"no real foregrounds, procedural only: {exc.one_line()}")
        if backgrounds is None:
            try:
                backgrounds = BackgroundBank()
            except HDMattError as exc:
                warnings.warn(f"no background photos, procedural only: {exc.one_line()}")
        self.dev, self.backgrounds = dev, backgrounds
        size = c.canvas
        self.place = PlaceForeground(size, max_rotation=c.max_rotation, native=c.highres_native)
        self.merge = MergeForegrounds(c.merge_probability)
        self.chain = Chain([ColourJitter(c.jitter_probability),
                            ColourOverlap(c.colour_overlap_probability),
                            BackgroundBlur(c.background_blur_probability),
                            RandomTrimap(c.trimap_radius),
                            Composite(c.noise_probability)]
                           + ([ClosedFormPrior(c.prior_downscale_probability,
                                               c.prior_downscale_factors, c.prior_solver,
                                               c.prior_cascade_probability,
                                               c.prior_cascade_weights, device)]
                              if c.prior else []))
        self.cropper = CropPatches(c.patch, c.crop_sizes, c.n_context, c.context_rule)

    def _placed_foreground(self, rng):
        size = self.config.canvas
        if self.dev is None or rng.random() < self.config.procedural_probability:
            src = procedural_foreground(rng, size, self.config.see_through_probability,
                                        self.config.plate_strand_probability,
                                        self.config.flag_probability)
        else:
            src = self.dev.draw(rng)
        fg, alpha = self.place(src, rng)
        return fg, alpha, src.name

    def scene(self, rng: np.random.Generator, max_tries: int = 8) -> dict:
        """A full composite scene: ``fg``, ``bg``, ``image`` (S, S, 3) sRGB 0-1, ``alpha``,
        ``trimap`` (and ``prior`` when configured) (S, S) float32, ``names`` (list of str)."""
        size = self.config.canvas
        for _ in range(max_tries):
            fg, alpha, name = self._placed_foreground(rng)
            scene = {"fg": fg, "alpha": alpha, "names": [name]}

            def second(scene=scene):  # this iteration's scene, as merge calls it at once
                f2, a2, n2 = self._placed_foreground(rng)
                scene["names"].append(n2)
                return f2, a2

            scene = self.merge(scene, second, rng)
            if self.backgrounds is None or rng.random() < self.config.procedural_background_probability:
                scene["bg"] = procedural_background(rng, size)
            else:
                scene["bg"] = self.backgrounds.draw(rng, size)
            scene = self.chain(scene, rng)
            if (scene["trimap"] == 0.5).any():
                return scene
        raise RuntimeError("could not synthesise a scene with unknown pixels")

    def crop(self, scene: dict, rng: np.random.Generator) -> dict:
        """One sample cut from ``scene`` (see :class:`~.transforms.CropPatches`) + ``names``."""
        sample = self.cropper(scene, rng)
        sample["names"] = list(scene["names"])
        return sample

    def __call__(self, rng: np.random.Generator) -> dict:
        """One sample from a fresh scene."""
        return self.crop(self.scene(rng), rng)
