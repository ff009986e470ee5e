"""The cache keys on ENGINE_VERSION: an engine change that moves alphas or foregrounds
without bumping it serves stale frames from every cache (it happened: two changes to the
cascade moved alphas by up to 0.09 under version 0.4.0). This test holds the shipped engine's
answers on three small frames (one within 1024 px, one the cascade takes, one with a
one-sided trimap) and a foreground to the ones recorded for the current version.

After a change that moves them on purpose: bump ``__version__`` (``nuke_hdmatt/__init__.py``
and ``pyproject.toml``), then record anew::

    .venv/bin/python tests/test_engine_version.py --record
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "engine_reference.npz"
# float32 on the CPU: thread counts and CPUs move alphas by <1e-4 (measured 7e-5)
TOLERANCE = 2e-3


def frames():
    """(image, trimap) of a 96x64 frame, a 1032x48 strip (over 1024 px: the cascade) and the
    first frame again with its background unknown (a trimap of one known region)."""
    out = []
    for h, w, seed in ((64, 96, 3), (48, 1032, 5)):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        edge = w * 0.45 + 6 * np.sin(yy / 5)
        alpha = np.clip((xx - edge) / 4 + 0.5, 0, 1)
        fg = np.stack([0.8 + 0 * xx, 0.5 + 0.2 * np.sin(xx / 11), 0.3 + 0 * xx], -1)
        bg = rng.random((h, w, 3)).astype(np.float32) * 0.3
        image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
        trimap = np.full((h, w), 0.5, np.float32)
        trimap[xx < edge - 8] = 0.0
        trimap[xx > edge + 8] = 1.0
        out.append((image, trimap))
    image, trimap = out[0]
    out.append((image, np.where(trimap == 0.0, 0.5, trimap).astype(np.float32)))
    return out


def answers() -> dict:
    from nuke_hdmatt.engine import Engine
    eng = Engine.load(device="cpu", precision="fp32")
    (small, small_tri), (strip, strip_tri), (_, one_sided_tri) = frames()
    small_alpha = eng.matte(small, small_tri)
    return {"small": small_alpha, "cascade": eng.matte(strip, strip_tri),
            "foreground": eng.foreground(small, small_alpha),
            "one_sided": eng.matte(small, one_sided_tri)}


def test_answers_move_only_with_the_engine_version():
    from nuke_hdmatt import ENGINE_VERSION
    ref = np.load(REFERENCE)
    assert str(ref["version"]) == ENGINE_VERSION, (
        f"ENGINE_VERSION is {ENGINE_VERSION} but the reference answers are of "
        f"{ref['version']}: record them (python tests/test_engine_version.py --record)")
    for name, got in answers().items():
        assert name in ref, f"no recorded {name} answer: bump the version, then record"
        moved = float(np.abs(got - ref[name]).max())
        assert moved <= TOLERANCE, (
            f"the engine's {name} answer moved by {moved:.4f} under version {ENGINE_VERSION}: "
            "caches would serve the old one; bump the version, then record "
            "(python tests/test_engine_version.py --record)")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    from nuke_hdmatt import ENGINE_VERSION
    np.savez_compressed(REFERENCE, version=np.array(ENGINE_VERSION),
                        **{k: v.astype(np.float32) for k, v in answers().items()})
    print(f"recorded {REFERENCE} for engine {ENGINE_VERSION}")
