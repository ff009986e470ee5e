"""Training-data synthesis for HDMatt (and, from the lead, the trainer).

The synthesis modules are numpy/scipy; ``dataset.py`` (the torch ``Dataset`` wrappers),
``trainer.py`` and ``loss.py`` import torch, and the package's own import never does.

The alphamatting-dev images in :data:`VALIDATION_IMAGES` are held out: no training source
ever yields them, and the model card names them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Dev images never used for training (validation split; 5 of the 18).
VALIDATION_IMAGES = ("GT02", "GT10", "GT18", "GT24", "GT27")


def shared_data_dir() -> Path:
    """``$HDMATT_SHARED_DATA`` or the project's shared data folder (may not exist)."""
    env = os.environ.get("HDMATT_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_cache_dir() -> Path:
    """Where derived training data (foreground colours, downscaled backgrounds) is cached:
    ``$HDMATT_DATA_CACHE`` or ``<repo>/.cache/fg`` (git-ignored)."""
    env = os.environ.get("HDMATT_DATA_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache" / "fg"
