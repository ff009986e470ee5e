"""Trimap values snapped to exactly 0 (background), 0.5 (unknown) and 1 (foreground).

One rule: a value within ``tolerance`` of 0 or of 1 is known, anything else is unknown. The
tolerance says where the values came from:

- :data:`FILE_TOLERANCE` for trimaps as people make them (0/0.5/1 floats, 0/128/255 and
  0/102/255 8-bit codes, anti-aliased paint): soft edge pixels between a known region and
  the unknown band fall into the band, the safe side (the network estimates them instead of
  copying a wrong known value).
- :data:`RESAMPLED_TOLERANCE` for a trimap area-resampled to another size: a pixel stays
  known only where its whole footprint was known (float rounding aside).

numpy only: the engine, the imaging layer, training and the benchmarks all snap here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["snap", "FILE_TOLERANCE", "RESAMPLED_TOLERANCE"]

FILE_TOLERANCE = 0.2
RESAMPLED_TOLERANCE = 1e-4


def snap(values, tolerance: float) -> np.ndarray:
    """float32 array of ``values``' shape holding 0, 0.5 or 1 (rule in the module docstring)."""
    values = np.asarray(values)
    out = np.full(values.shape, 0.5, dtype=np.float32)
    out[values <= tolerance] = 0.0
    out[values >= 1.0 - tolerance] = 1.0
    return out
