"""Network configuration: a small, typed, versioned object stored inside the weights file.

The same loader builds the light CPU-trainable configuration and the paper's
ResNet-34 configuration; unknown keys are rejected so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

CONFIG_VERSION = 1
VARIANTS = ("A", "B", "C", "D")
PRIOR_SOLVERS = ("cf", "knn", "lbdm", "rw", "sm")
"""PyMatting solvers a variant-D prior may average: closed-form, KNN, learning-based,
random walk, shared matting."""


def prior_solver_names(text: str) -> tuple[str, ...]:
    """``"cf+sm"`` -> ``("cf", "sm")``; ValueError unless distinct names from PRIOR_SOLVERS."""
    names = tuple(text.split("+"))
    if not all(n in PRIOR_SOLVERS for n in names) or len(set(names)) != len(names):
        raise ValueError(f"prior solver must join distinct names from {', '.join(PRIOR_SOLVERS)} "
                         f"with '+', got {text!r}")
    return names


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an HDMatt network.

    variant: "A" no cross-patch context; "B" CPC + plain non-local; "C" CPC + TGNL
    (the paper's HDMatt); "D" = C plus a closed-form prior alpha input channel and a
    residual on the prior's logit (our extension).
    blocks / width: ResNet BasicBlock counts per stage and the first stage's width
    (stage widths are width * 1, 2, 4, 8); ResNet-34 is [3, 4, 6, 3] at 64.
    dilations: dilation of the last two stages (output stride 8).
    prior_solver: variant D's classical prior, PyMatting solvers joined by "+" and averaged
    ("cf", "cf+knn"); files written before it existed mean "cf".
    """

    variant: str = "C"
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 64
    stem_width: int = 32
    dilations: tuple[int, int] = (2, 4)
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_width: int = 256
    key_dim: int = 64
    value_dim: int = 128
    k: int = 3
    decoder_width: int = 64
    prior_solver: str = "cf"
    version: int = CONFIG_VERSION

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if len(self.blocks) != 4 or len(self.dilations) != 2:
            raise ValueError("blocks needs 4 stage counts and dilations 2 values")
        prior_solver_names(self.prior_solver)

    @property
    def in_channels(self) -> int:
        """RGB + trimap, plus the prior alpha for variant D."""
        return 5 if self.variant == "D" else 4

    @property
    def uses_context(self) -> bool:
        return self.variant != "A"

    @property
    def uses_prior(self) -> bool:
        return self.variant == "D"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model configuration keys: {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


PAPER = ModelConfig()
"""The paper's configuration: ResNet-34 widths 64-512, ASPP 256. Train on a GPU."""

LIGHT = ModelConfig(blocks=(2, 2, 2, 2), width=32, stem_width=16, aspp_width=128,
                    aspp_rates=(3, 6, 9), key_dim=32, value_dim=64, decoder_width=32)
"""A ResNet-18-layout, half-width configuration trainable on a 2-core CPU."""

PRESETS = {"paper": PAPER, "light": LIGHT}
