"""Reading plates with OpenImageIO, channels chosen by name, data window honoured.

Channels are never picked by position: a compositor's EXR may hold dozens of AOVs
in any order, and a plate from another vendor may store B before R. The data window
(EXR bbox: overscan, or a cropped region) is kept as-is; the engine works on the
data window only and the writer puts the alpha back with the same windows.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import OpenImageIO as oiio

from ..errors import ONCE_A_SHOT, ChannelError, MissingFileError, PlateError
from ..sequence import frame_file

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]
MAX_PIXELS = 16384 * 16384

@dataclass
class Plate:
    """Pixels of some channels of one image, plus what is needed to write results back.

    Attributes
    ----------
    pixels : np.ndarray
        float32, shape (H, W, C) over the DATA window, channels in ``channels`` order.
        Values as stored in the file (no colour conversion; 8/16-bit files scaled to 0-1).
    channels : list of str
        Channel names as requested, e.g. ``["R", "G", "B"]``.
    data_window, display_window : tuple of int
        ``(x, y, width, height)`` in OpenImageIO/EXR convention (y down from the top).
    colorspace : str or None
        The file's ``oiio:ColorSpace`` metadata (for an output of ours without it, its
        ``hdmatt:colorspace`` stamp), ``None`` if absent.
    path : str
        The concrete file read (frame already substituted).
    frame : int or None
    spec : oiio.ImageSpec
        Full spec of the source subimage (all channels, all metadata).
    subimage : int
        Index of the subimage (EXR part) the channels came from.
    """

    pixels: np.ndarray
    channels: list[str]
    data_window: Window
    display_window: Window
    colorspace: str | None
    path: str
    frame: int | None
    spec: "oiio.ImageSpec" = field(repr=False)
    subimage: int = 0

    @property
    def file_format(self) -> str:
        """OpenImageIO format name of the source file, e.g. ``"openexr"``, ``"png"``."""
        return self.spec.getattribute("oiio:FormatName") or _format_from_ext(self.path)

    @property
    def is_float(self) -> bool:
        """True when the source channels are half/float (scene-referred storage)."""
        return self.spec.format.basetype in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE)


def _format_from_ext(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return {"exr": "openexr", "tif": "tiff", "jpg": "jpeg"}.get(ext, ext)


def parse_channels(channels: str | Sequence[str]) -> list[str]:
    """Split ``"diffuse.R,diffuse.G,diffuse.B"`` (or a sequence) into stripped names."""
    if isinstance(channels, str):
        names = [c.strip() for c in channels.split(",")]
    else:
        names = [str(c).strip() for c in channels]
    if not names or any(not n for n in names):
        raise ChannelError(f"empty channel name in {channels!r}")
    return names


def window_of(spec: "oiio.ImageSpec") -> tuple[Window, Window]:
    """(data_window, display_window) of an ImageSpec as ``(x, y, width, height)``."""
    return ((spec.x, spec.y, spec.width, spec.height),
            (spec.full_x, spec.full_y, spec.full_width, spec.full_height))


def rewindow(values: np.ndarray, source: Window, target: Window) -> np.ndarray:
    """(H, W) ``values`` over window ``source`` re-cut to window ``target``: cropped where
    ``target`` is smaller, 0 where it reaches outside ``source`` (outside its data window an
    image is black, as in Nuke)."""
    sx, sy, sw, sh = source
    tx, ty, tw, th = target
    out = np.zeros((th, tw), dtype=np.float32)
    x0, y0 = max(sx, tx), max(sy, ty)
    x1, y1 = min(sx + sw, tx + tw), min(sy + sh, ty + th)
    if x1 > x0 and y1 > y0:
        out[y0 - ty:y1 - ty, x0 - tx:x1 - tx] = values[y0 - sy:y1 - sy, x0 - sx:x1 - sx]
    return out


def channel_formats(spec: "oiio.ImageSpec") -> list["oiio.TypeDesc"]:
    """Per-channel storage formats (OIIO leaves ``channelformats`` empty when uniform)."""
    return list(spec.channelformats) or [spec.format] * spec.nchannels


def open_image(path: str, frame: int | None = None) -> "oiio.ImageInput":
    """Open ``path`` for reading, raising typed errors instead of returning None.

    Raises
    ------
    MissingFileError
        The file does not exist.
    PlateError
        OpenImageIO cannot read the header (unknown format, truncated header).
    """
    if not os.path.exists(path):
        raise MissingFileError("file not found", path=path, frame=frame)
    if os.path.isdir(path):
        raise PlateError("is a folder, not an image", path=path, frame=frame)
    check_file_name(path, frame)
    # the file's own values: OpenImageIO multiplies an unassociated alpha (PNG, most TIFFs)
    # into R, G, B by default, so a plate carrying a matte or a trimap in its alpha was
    # darkened where it was not opaque (Nuke's Read, premultiplied off, reads them as stored)
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    # (by its name: a look at its first bytes would open every plate twice)
    with _library_lines_caught(path.lower().endswith(".png")):
        inp = oiio.ImageInput.open(path, config)
    if inp is None:
        raise PlateError(f"cannot read image: {_last_error()}", path=path, frame=frame)
    return inp


def check_file_name(path: str, frame: int | None = None, error=PlateError) -> None:
    """Raise ``error`` when OpenImageIO cannot take ``path`` at all: it takes names as UTF-8
    text, and a name with other bytes (which POSIX allows; Python keeps them as surrogate
    escapes) does not convert. The message shows those bytes as U+FFFD."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "replace")
        raise error("the file name is not valid UTF-8, which OpenImageIO cannot read or "
                    "write", path=shown, frame=frame) from None


def _last_error(inp: "oiio.ImageInput | None" = None) -> str:
    # OIIO keeps a per-thread error queue; reading it also clears it, so a stale
    # message never leaks into the next error.
    msg = (inp.geterror() if inp is not None else "") or oiio.geterror()
    msg = " ".join(msg.split())  # one line, whatever OIIO produced
    return msg or "unknown OpenImageIO error"


def subimage_specs(inp: "oiio.ImageInput") -> list["oiio.ImageSpec"]:
    """Specs of every subimage (EXR part) of an open image, in file order."""
    specs = []
    index = 0
    while inp.seek_subimage(index, 0):
        specs.append(oiio.ImageSpec(inp.spec()))
        index += 1
    return specs


def read_subimage(inp: "oiio.ImageInput", subimage: int, path: str,
                  frame: int | None = None, chbegin: int = 0,
                  chend: int | None = None, half: bool = False) -> np.ndarray:
    """Read channels ``[chbegin, chend)`` of one subimage as float32 (H, W, C).

    ``half=True`` returns float16 instead (exact for half-stored channels, half the
    memory when copying a large AOV plate through to the output).
    Raises PlateError for truncated or corrupt pixel data (OIIO returns None then).
    """
    if not inp.seek_subimage(subimage, 0):
        raise PlateError(f"no subimage {subimage}", path=path, frame=frame)
    spec = inp.spec()
    if chend is None:
        chend = spec.nchannels
    if spec.depth > 1 or spec.deep:
        raise PlateError("deep/volume images are not supported; flatten first (DeepToImage)",
                         path=path, frame=frame)
    if spec.width * spec.height > MAX_PIXELS:
        # a damaged header (or a mistaken file) must not ask for hundreds of GB
        raise PlateError(f"is {spec.width}x{spec.height}, more than the {MAX_PIXELS} pixels "
                         "(16384x16384) hdmatt reads", path=path, frame=frame)
    inp.geterror()  # clears what the header left, so what follows is this read's own
    with _library_lines_caught(inp.format_name() == "png"):
        pixels = inp.read_image(subimage, 0, chbegin, chend, oiio.HALF if half else oiio.FLOAT)
    # a truncated JPEG decodes: its missing rows come back grey and the reader says so
    # only in its error queue (a matte of half a plate would otherwise be written); other
    # readers queue errors beside good pixels (WebP after a seek past its one subimage)
    if pixels is None or (inp.format_name() == "jpeg" and inp.has_error):
        raise PlateError(f"cannot read pixels (truncated or corrupt?): {_last_error(inp)}",
                         path=path, frame=frame)
    pixels = np.asarray(pixels, dtype=np.float16 if half else np.float32)
    return pixels.reshape(spec.height, spec.width, chend - chbegin)


_STDERR = threading.Lock()


@contextmanager
def _library_lines_caught(active: bool) -> Iterator[None]:
    """libpng prints its errors and warnings to the process's stderr itself (OpenImageIO
    installs no handler for them), beside the one line a bad input is owed: while
    ``active``, descriptor 2 goes to a scratch file; libpng's lines are logged at debug
    level (OpenImageIO's error names the problem) and any other line is passed on."""
    if not active:
        yield
        return
    with _STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.startswith("libpng "):
                    log.debug("%s", line)
                else:
                    try:
                        os.write(2, (line + "\n").encode())
                    except OSError:  # stderr gone (a closed pipe): nowhere to say it
                        pass


def part_label(spec: "oiio.ImageSpec", index: int) -> str:
    """An EXR part's name (``oiio:subimagename``: a stereo file's ``left``), else ``part N``."""
    return spec.getattribute("oiio:subimagename") or f"part {index}"


def find_part(specs: list, part: str) -> int | None:
    """Index of the subimage named ``part``, else numbered ``part`` (0 is the first); None
    when the file has neither."""
    for i, spec in enumerate(specs):
        if spec.getattribute("oiio:subimagename") == part:
            return i
    if part.isdigit() and int(part) < len(specs):
        return int(part)
    return None


def part_for(path: str, part: str | None, frame: int | None = None) -> str | None:
    """The plate's ``--part`` as it applies to another input (a trimap, a matte): that part
    where the file has it, None for a file of one part (one trimap for every view).

    Raises
    ------
    ChannelError
        A file of several parts without it: reading its first would take another view's.
    """
    if part is None:
        return None
    inp = open_image(path, frame)
    try:
        specs = subimage_specs(inp)
    finally:
        inp.close()
    if find_part(specs, part) is not None:
        return part
    if len(specs) == 1:
        return None
    raise ChannelError(f"no part {part!r} (--part) among its parts: {_describe_channels(specs)}",
                       path=path, frame=frame)


def read_plate(path: str, channels: str | Sequence[str] = ("R", "G", "B"),
               frame: int | None = None, part: str | None = None) -> Plate:
    """Read named channels of an image over its data window.

    Parameters
    ----------
    path : str
        EXR (scanline, tiled, multi-part, half/float), TIFF, PNG, JPEG, DPX, ... anything
        OpenImageIO reads. May hold a frame placeholder (see :func:`~nuke_hdmatt.sequence.frame_file`).
    channels : str or sequence of str
        Channel names, e.g. ``("R", "G", "B")`` or ``"diffuse.R,diffuse.G,diffuse.B"``.
        Matched exactly (case-sensitive). Every subimage (EXR part) is searched; the first
        that holds all of them is used.
    frame : int, optional
        Frame number substituted into ``path`` and named in errors.
    part : str, optional
        The EXR part to read, by name (a stereo file's ``right``) or number (0 is the
        first), instead of the first part holding ``channels``.

    Returns
    -------
    Plate
        ``pixels`` float32 (H, W, len(channels)) over the data window, file values
        (no colour conversion).

    Raises
    ------
    MissingFileError, PlateError, ChannelError
        ChannelError lists the channels that do exist.
    """
    names = parse_channels(channels)
    path = frame_file(path, frame)
    inp = open_image(path, frame)
    try:
        specs = subimage_specs(inp)
        index = _part_holding(specs, names, part, path, frame)
        spec = specs[index]
        have = list(spec.channelnames)
        idx = [have.index(n) for n in names]
        lo, hi = min(idx), max(idx) + 1
        # Read only the span of channels we need: an AOV-heavy EXR can hold 100+ channels.
        block = read_subimage(inp, index, path, frame, lo, hi)
        order = [i - lo for i in idx]
        # the span as read is the answer when it holds the channels in order (R, G, B: a
        # 6K plate's fancy-indexed copy and its re-layout cost 2.3 s); take() keeps C order
        pixels = block if order == list(range(hi - lo)) else np.take(block, order, axis=2)
    finally:
        inp.close()
    data_window, display_window = window_of(spec)
    # OpenImageIO writes only the spaces it has an interop id for: our outputs keep the
    # space of their colour channels in the stamp too
    colorspace = (spec.getattribute("oiio:ColorSpace") or spec.getattribute("hdmatt:colorspace")
                  or None)
    return Plate(pixels=pixels, channels=names, data_window=data_window,
                 display_window=display_window, colorspace=colorspace, path=path,
                 frame=frame, spec=spec, subimage=index)


def _part_holding(specs: list, names: list[str], part: str | None, path: str,
                  frame: int | None) -> int:
    """The subimage to read ``names`` from: ``part``, else the first holding them all."""
    if part is not None:
        index = find_part(specs, part)
        if index is None:
            raise ChannelError(f"no part {part!r}; the file has: {_describe_channels(specs)}",
                               path=path, frame=frame, channel=",".join(names))
        missing = [n for n in names if n not in specs[index].channelnames]
        if missing:
            raise ChannelError(f"channel(s) {', '.join(missing)} not in part "
                               f"{part_label(specs[index], index)}; the file has: "
                               f"{_describe_channels(specs)}",
                               path=path, frame=frame, channel=",".join(names))
        return index
    holding = [i for i, sp in enumerate(specs) if all(n in sp.channelnames for n in names)]
    if not holding:
        raise ChannelError(f"channel(s) {', '.join(n for n in names if not _in_any(n, specs))}"
                           f" not found; the file has: {_describe_channels(specs)}",
                           path=path, frame=frame, channel=",".join(names))
    if len(holding) > 1:
        # a stereo file's parts (left, right), say: the first is matted, and says so
        parts = ", ".join(part_label(specs[i], i) for i in holding)
        log.warning("%s: %s are in %d parts (%s); the first, %s, is read (--part chooses)",
                    path, ",".join(names),
                    len(holding), parts, part_label(specs[holding[0]], holding[0]),
                    extra={ONCE_A_SHOT: ("parts", tuple(names), parts)})
    return holding[0]


def _in_any(name: str, specs: list["oiio.ImageSpec"]) -> bool:
    return any(name in spec.channelnames for spec in specs)


def _describe_channels(specs: list["oiio.ImageSpec"]) -> str:
    if len(specs) == 1:
        return ", ".join(specs[0].channelnames)
    parts = []
    for i, spec in enumerate(specs):
        parts.append(f"[{part_label(spec, i)}] " + ", ".join(spec.channelnames))
    return "; ".join(parts)
