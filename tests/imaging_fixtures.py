"""Write real image files with OpenImageIO for the imaging tests.

Kept independent of ``nuke_hdmatt.imaging`` on purpose: fixtures written by the code
under test would hide its bugs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import OpenImageIO as oiio


@dataclass
class Part:
    """One subimage to write: float32 pixels (H, W, C) and how to store them."""

    pixels: np.ndarray
    channels: tuple[str, ...]
    fmt: str = "half"
    data_origin: tuple[int, int] = (0, 0)
    display: tuple[int, int, int, int] | None = None  # x, y, width, height
    tile: tuple[int, int] | None = None
    name: str | None = None
    attrs: dict = field(default_factory=dict)
    channel_formats: tuple[str, ...] | None = None


def _spec(part: Part, compression: str) -> "oiio.ImageSpec":
    h, w, c = part.pixels.shape
    assert c == len(part.channels)
    spec = oiio.ImageSpec(w, h, c, oiio.TypeDesc(part.fmt))
    spec.channelnames = tuple(part.channels)
    spec.x, spec.y = part.data_origin
    if part.display is not None:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = part.display
    else:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = (*part.data_origin, w, h)
    if part.tile:
        spec.tile_width, spec.tile_height = part.tile
    if part.name:
        spec.attribute("oiio:subimagename", part.name)
    if part.channel_formats:
        spec.channelformats = tuple(oiio.TypeDesc(f) for f in part.channel_formats)
    if "A" in part.channels:
        spec.alpha_channel = part.channels.index("A")
    spec.attribute("compression", compression)
    for key, value in part.attrs.items():
        spec.attribute(key, value)
    return spec


def write_parts(path, parts: list[Part], compression: str = "zip") -> str:
    """Write one or more subimages (multi-part EXR when several)."""
    path = str(path)
    specs = [_spec(p, compression) for p in parts]
    out = oiio.ImageOutput.create(path)
    assert out is not None, oiio.geterror()
    ok = out.open(path, tuple(specs)) if len(specs) > 1 else out.open(path, specs[0])
    assert ok, out.geterror()
    for i, (spec, part) in enumerate(zip(specs, parts)):
        if i:
            assert out.open(path, spec, "AppendSubimage"), out.geterror()
        assert out.write_image(np.ascontiguousarray(part.pixels, dtype=np.float32)), out.geterror()
    assert out.close()
    return path


def write_image(path, pixels: np.ndarray, channels=("R", "G", "B"), **kw) -> str:
    """Write a single-subimage file; keyword arguments as in :class:`Part`."""
    compression = kw.pop("compression", "zip")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return write_parts(path, [Part(pixels, tuple(channels), **kw)], compression)


def read_all(path) -> list[tuple["oiio.ImageSpec", np.ndarray]]:
    """Every subimage of a file: (spec, float32 (H, W, C)) pairs, via ImageInput."""
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    out = []
    index = 0
    while inp.seek_subimage(index, 0):
        spec = oiio.ImageSpec(inp.spec())
        pixels = inp.read_image(index, 0, 0, spec.nchannels, oiio.FLOAT)
        assert pixels is not None, inp.geterror()
        out.append((spec, np.asarray(pixels, dtype=np.float32).reshape(
            spec.height, spec.width, spec.nchannels)))
        index += 1
    inp.close()
    return out


def rng_pixels(h: int, w: int, c: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Deterministic random float32 pixels, exactly representable in half."""
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, c)) * scale).astype(np.float16).astype(np.float32)
