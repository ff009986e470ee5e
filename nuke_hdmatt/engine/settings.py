"""Inference settings: one frozen object for everything that shapes an alpha besides the
weights and the device.

The engine takes it (:class:`~nuke_hdmatt.engine.runner.Engine`), the command line builds
its options and their choices from it, the Nuke side writes it into the engine call, and
the cache key reads it (through :meth:`Engine.params`). Standard library only: Nuke's
Python imports it, and the command line checks it before torch loads.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["InferenceSettings", "check_device", "PRECISIONS", "PRIOR_METHODS", "PRIOR_MODES", "PRIOR_CHOICES",
           "DEFAULT_DETAIL", "FIXED_DETAIL", "MAX_PATCH", "MAX_POOL", "DEFAULT_SNAP", "MAX_SNAP"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DEVICE = re.compile(r"auto|cpu|cuda(:(0|[1-9][0-9]*))?")  # torch's own spelling: no cuda:01


def check_device(device: str) -> str:
    """``device`` when it names one the engine knows (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``), else ValueError; whether this machine has it is the engine's to say."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return device

#: Classical priors alone (``engine/prior.py``): a whole-frame solve at <= 1024 px, or per patch.
PRIOR_METHODS = ("global", "local")
#: What the engine runs: the classical priors, or the cascade (``engine/cascade.py``).
PRIOR_MODES = PRIOR_METHODS + ("cascade",)
#: What a user may ask for: ``auto`` is the cascade; ``none`` asks for weights that take no
#: prior (the caller checks it against the weights once they are loaded).
PRIOR_CHOICES = ("auto",) + PRIOR_MODES + ("none",)
#: The cascade's step from the guided-upsampled 1024 px alpha to the full-resolution pass:
#: ``auto`` predicts it per pixel with the detail model fitted to the weights
#: (``engine/detail.py``), or takes :data:`FIXED_DETAIL` for weights without one.
DEFAULT_DETAIL = "auto"
#: The fixed step chosen on composites of the training images (docs/ENGINE.md, "The cascade
#: step").
FIXED_DETAIL = 0.25
# The engine's working set grows with patch**2 * batch and with the context pool: these
# keep any setting within the memory docs/COMMAND_LINE.md states (Reliability).
MAX_PATCH = 1024
MAX_POOL = 256
#: Unknown-band alpha within this of 0 or 1 is set to exactly 0 or 1 (``engine/snap.py``;
#: chosen on the training images, docs/ENGINE.md "Snapping to 0 and 1").
DEFAULT_SNAP = 0.01
MAX_SNAP = 0.25


@dataclass(frozen=True)
class InferenceSettings:
    """How the engine cuts, chooses context and refines; validated on construction.

    patch, overlap : pixels (patch a multiple of 8 up to :data:`MAX_PATCH`; overlap up to
        half the patch)
    k, pool : context patches kept per query, and candidates scored for them
    precision : one of :data:`PRECISIONS` (auto: fp16 on CUDA; on the CPU bf16
        where it computes bf16 natively (AVX512-BF16, AMX), else fp32)
    prior : one of :data:`PRIOR_CHOICES`
    prior_max_side : long side (pixels) at which the classical prior and the cascade's
        coarse pass run
    detail : the cascade's step to the full-resolution pass, 0-1 (0: the 1024 px alpha
        guided-upsampled, no full-resolution pass; 1: the pass whole), or ``"auto"``: a
        step per pixel predicted by the weights' detail model
    batch : patches per network call (None: 16 on CUDA, 4 on the CPU)
    context : False runs every query without context patches (the paper's ablation)
    flip : on frames within ``prior_max_side`` (the cascade's coarse pass among them), the
        mean of the network's alpha and of its alpha on the mirrored frame, mirrored back
        (twice that pass's network time; False: one pass)
    snap : unknown-band alpha within ``snap`` of 0 or 1 becomes exactly 0 or 1, 0 to
        :data:`MAX_SNAP` (0: off)

    Raises ``ValueError`` naming the command-line option (``--patch`` ...) and its range.
    """

    patch: int = 320
    overlap: int = 32
    k: int = 3
    pool: int = 30
    precision: str = "auto"
    prior: str = "auto"
    prior_max_side: int = 1024
    detail: float | str = DEFAULT_DETAIL
    batch: int | None = None
    context: bool = True
    flip: bool = True
    snap: float = DEFAULT_SNAP

    def __post_init__(self):
        p = self.patch
        if not _is_int(p) or p < 8 or p % 8 or p > MAX_PATCH:
            raise ValueError(f"--patch must be a multiple of 8 from 8 to {MAX_PATCH}, got {p}")
        if not _is_int(self.overlap) or not 0 <= self.overlap <= p // 2:
            raise ValueError(f"--overlap must be from 0 to half the patch ({p // 2}), "
                             f"got {self.overlap}")
        if not _is_int(self.pool) or not 1 <= self.pool <= MAX_POOL:
            raise ValueError(f"--pool must be from 1 to {MAX_POOL}, got {self.pool}")
        if not _is_int(self.k) or not 1 <= self.k <= self.pool:
            raise ValueError(f"--k must be from 1 to the pool size ({self.pool}), got {self.k}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.prior not in PRIOR_CHOICES:
            raise ValueError(f"--prior must be one of {', '.join(PRIOR_CHOICES)}, "
                             f"got {self.prior!r}")
        if self.detail != "auto" and (
                isinstance(self.detail, bool) or not isinstance(self.detail, (int, float))
                or math.isnan(self.detail) or not 0.0 <= self.detail <= 1.0):
            raise ValueError(f"--detail must be auto or between 0 and 1, got {self.detail!r}")
        if not _is_int(self.prior_max_side) or self.prior_max_side < 64:
            raise ValueError(f"prior_max_side must be at least 64, got {self.prior_max_side}")
        if (isinstance(self.snap, bool) or not isinstance(self.snap, (int, float))
                or math.isnan(self.snap) or not 0.0 <= self.snap <= MAX_SNAP):
            raise ValueError(f"--snap must be from 0 to {MAX_SNAP}, got {self.snap!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")
        if self.batch is not None and (not _is_int(self.batch) or self.batch < 1):
            raise ValueError(f"batch must be at least 1, got {self.batch}")

    @property
    def prior_mode(self) -> str:
        """The prior the engine runs (``auto`` and ``none`` run the cascade)."""
        return "cascade" if self.prior in ("auto", "none") else self.prior

    def replace(self, **changes) -> "InferenceSettings":
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_options(cls, options: dict) -> "InferenceSettings":
        """Settings from a dict of the fields given (None values and other keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})

    def argv(self) -> list[str]:
        """The ``hdmatt matte`` options that ask for these settings (what the CLI parses
        back into equal settings); ``batch`` and ``context`` have no option."""
        return ["--patch", str(self.patch), "--overlap", str(self.overlap), "--k", str(self.k),
                "--pool", str(self.pool), "--precision", self.precision, "--prior", self.prior,
                "--detail", self.detail if self.detail == "auto" else repr(float(self.detail)),
                *([] if self.flip else ["--no-flip"]), "--snap", repr(float(self.snap))]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
