"""HDMatt engine: arrays in, arrays out. Knows nothing about files, Nuke or OCIO.

``Engine`` is imported lazily so that ``import nuke_hdmatt.engine`` stays cheap;
torch loads on first use.
"""

from __future__ import annotations

__all__ = ["Engine", "ModelConfig"]


def __getattr__(name):
    if name == "Engine":
        from .runner import Engine
        return Engine
    if name == "ModelConfig":
        from .config import ModelConfig
        return ModelConfig
    raise AttributeError(name)
