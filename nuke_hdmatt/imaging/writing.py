"""Writing the alpha: EXR with every plate channel and all metadata kept, or a
single-channel PNG/TIFF; always atomic.

Atomicity: the image is written to a hidden temporary file in the target's folder,
flushed to disk (fsync), then ``os.replace``-d over the target, so a reader (Nuke, the
next farm task) sees either the old file or the complete new one. Any failure removes
the temporary file and leaves an existing output untouched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time

import numpy as np
import OpenImageIO as oiio

from .. import ENGINE_VERSION
from ..atomic import atomic_path, remove_all, temp_beside
from ..errors import HDMattError, OutputError, UsageError
from .plates import Plate, channel_formats, open_image, read_subimage, rewindow, subimage_specs

log = logging.getLogger(__name__)

#: Compression names OpenEXR understands (an optional ``:level`` suffix is allowed on
#: zip/zips/dwaa/dwab). OIIO silently writes zip for anything else, so we check first.
COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
_LEVELLED = ("zip", "zips", "dwaa", "dwab")
_TIFF_COMPRESSIONS = ("none", "lzw", "zip", "packbits")
_PNG_COMPRESSIONS = ("zip",)
_EXTENSIONS = {".exr": "openexr", ".png": "png", ".tif": "tiff", ".tiff": "tiff"}

METADATA_PREFIX = "hdmatt:"

# Temp files are ".<name>.<8 random>.tmp<ext>" beside the output (atomic.temp_beside's random part);
# one older than this was left by a killed run (SIGKILL, power loss): a live write takes
# seconds, and another user's run on the same shot is not a day long.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<ext>\.[^.]+)$")
STALE_TEMP_S = 86400.0

# Attributes that describe the SOURCE file's structure or pixels, not the image, and
# would be false in the output: a texture's mip settings make OIIO declare MIP levels we
# never write, and a constant/average colour or hash goes stale once a channel is added.
HALF_MAX = 65504.0  # the largest finite half
_STALE_ATTRIBUTES = ("oiio:subimages", "oiio:miplevels", "textureformat",
                     "openexr:roundingmode", "oiio:ConstantColor", "oiio:AverageColor",
                     "oiio:SHA-1")


def output_format(path: str) -> str:
    """OpenImageIO format name for an output path; UsageError for unsupported extensions."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise UsageError(f"unsupported output extension {ext or '(none)'!r}; use "
                         f"{', '.join(sorted(_EXTENSIONS))}", path=path)
    return _EXTENSIONS[ext]


def check_compression(compression: str, fmt: str, path: str | None = None) -> str:
    """Validate a compression name for a format; returns it lower-cased.

    Raises
    ------
    UsageError
        Unknown name (lists the valid ones) or a level where none is allowed.
    """
    name = str(compression).strip().lower()
    base, _, level = name.partition(":")
    valid = {"openexr": COMPRESSIONS, "tiff": _TIFF_COMPRESSIONS, "png": _PNG_COMPRESSIONS}[fmt]
    if base not in valid or (level and (base not in _LEVELLED or not level.isdigit())):
        raise UsageError(f"unknown {fmt} compression {compression!r}; valid: {', '.join(valid)}",
                         path=path, channel=None)
    return name


#: Nuke's own layers: a channel added to one of them (``depth.alpha``) is not a layer of ours.
RESERVED_LAYERS = ("rgba", "rgb", "alpha", "depth", "mask")


def check_layer(layer: str, path: str | None = None) -> None:
    """``--layer``: ``rgba`` or a new layer's name (EXR output only)."""
    if layer != "rgba":
        check_layer_name(layer, "--layer", path, hint="rgba or a name like hdmatt")


def check_layer_name(name: str, flag: str, path: str | None = None, *,
                     hint: str = "a name like fg") -> None:
    """A layer name an EXR and Nuke read as one layer: the channel is ``NAME.x``, so a dot
    inside would split it (``bad.name.alpha`` is layer ``bad.name`` or ``bad``); spaces and
    commas break channel lists; none of Nuke's own layers."""
    if not name or any(c in name for c in " ,.") or name.lower() in RESERVED_LAYERS:
        raise UsageError(f"{flag} {name!r}: not a usable layer name (no spaces, commas or dots; "
                         f"not {', '.join(RESERVED_LAYERS)}): give {hint}", path=path)


def _temp_suffix(out_path: str) -> str:
    return f".tmp{os.path.splitext(out_path)[1]}"


def _cannot_create(out_path: str, exc: OSError) -> OutputError:
    folder = os.path.dirname(os.path.abspath(out_path))
    return OutputError(f"cannot create a file in {folder}: {exc.strerror}", path=out_path)


def check_output_location(out_path: str) -> None:
    """Fail now, not after the frame is computed, if ``out_path`` cannot be written: its
    folder must exist and take a file (a temp file is created and removed), and the path
    must not be a folder.

    Raises
    ------
    OutputError
    """
    if os.path.isdir(out_path):
        raise OutputError("is a folder; give a file name for the output", path=out_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise OutputError(f"output folder {folder} does not exist", path=out_path)
    made: list[str] = []
    try:  # a temp file as the write will make one (see _TEMP_NAME), removed at once
        temp_beside(out_path, _temp_suffix(out_path), into=made)
    except OSError as exc:
        raise _cannot_create(out_path, exc) from None
    finally:
        remove_all(made)


def remove_stale_temps(folder: str, is_output, max_age_s: float = STALE_TEMP_S) -> int:
    """Remove temp files of killed runs from ``folder``: only ours (``is_output(name)`` is
    true for the output file name they stood for) and only older than ``max_age_s``.
    Returns how many went; anything that cannot be removed is left alone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    now = time.time()
    removed = 0
    for name in names:
        m = _TEMP_NAME.match(name)
        if not m or not is_output(m.group("name") + m.group("ext")):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path) and now - os.stat(path).st_mtime > max_age_s:
                os.unlink(path)
                removed += 1
        except OSError:
            pass
    return removed


def stamp_attributes(metadata: dict | None) -> dict[str, object]:
    """``hdmatt:*`` attributes for a metadata dict.

    Strings, ints and floats are stored as such; anything else (dicts of parameters,
    lists) as JSON text. ``engine_version`` defaults to the running engine version.
    """
    items: dict[str, object] = {"engine_version": ENGINE_VERSION}
    items.update(metadata or {})
    out: dict[str, object] = {}
    for key, value in items.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            value = json.dumps(value, sort_keys=True, default=str)
        out[METADATA_PREFIX + str(key)] = value
    return out


def _check_alpha(alpha: np.ndarray, plate: Plate | None, path: str) -> np.ndarray:
    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise OutputError(f"alpha must be (H, W), got shape {a.shape}", path=path)
    if plate is not None and a.shape != plate.pixels.shape[:2]:
        raise OutputError(f"alpha is {a.shape[1]}x{a.shape[0]} but the plate data window is "
                          f"{plate.pixels.shape[1]}x{plate.pixels.shape[0]}", path=path)
    if not np.isfinite(a).all():
        raise OutputError("alpha holds NaN/inf values", path=path)
    return a


def write_alpha(out_path: str, alpha: np.ndarray, plate: Plate | None, *, layer: str = "rgba",
                compression: str = "zip", half: bool = True, metadata: dict | None = None,
                bit_depth: int = 8, channels: dict[str, np.ndarray] | None = None,
                plate_channels: bool = True) -> None:
    """Write an alpha matte, atomically.

    Parameters
    ----------
    out_path : str
        ``.exr``, ``.png``, ``.tif`` or ``.tiff``; the folder must exist.
    alpha : np.ndarray
        float32 (H, W) in [0, 1] over the plate's DATA window (linear coverage, no colour
        space).
    plate : Plate or None
        EXR output copies EVERY subimage and channel of ``plate.path`` (values and
        per-channel formats as stored) with all metadata, and adds the alpha to the
        plate's subimage, keeping its data and display windows. ``None`` writes the alpha
        alone with data = display window = (0, 0, W, H).
    layer : str
        ``"rgba"`` writes the alpha as channel ``A`` (replacing an existing A);
        any other name writes ``<layer>.alpha`` (replacing it if present).
    compression : str
        EXR: one of :data:`COMPRESSIONS` (``zip:6``, ``dwaa:45`` levels allowed);
        TIFF: none/lzw/zip/packbits; PNG: zip. Anything else raises UsageError.
    half : bool
        EXR: store the alpha as half (relative error <= 2**-11) instead of float.
        Source channels keep their own formats; integer sources become half. Attributes
        describing the source file's structure (MIP levels, constant colour, SHA-1) are
        dropped; every other attribute is copied.
    metadata : dict, optional
        Stamped as ``hdmatt:<key>`` attributes (engine version, weights id/sha256,
        parameters, colour config/space); see :func:`stamp_attributes`. Also written to
        PNG/TIFF as text attributes where the format keeps them.
    channels : dict of str to np.ndarray, optional
        EXR only: more float32 (H, W) channels over the same data window, stored like the
        alpha (half unless ``half=False``; float where the channel they replace is float or
        a value is beyond half's range), each added to the plate's subimage or replacing
        the channel of that name (the foreground: ``fg.R``... or a premultiplied ``R``...).
        PNG/TIFF hold the alpha alone: any channel here is a UsageError.
    plate_channels : bool
        EXR with a plate: False writes the alpha (and ``channels``) alone, over the plate
        part's windows and with its attributes, without the plate's channels and other
        parts (a Nuke comp that copies the alpha back onto its own plate needs no copy of
        a float plate in every alpha frame).
    bit_depth : int
        PNG/TIFF only: 8 or 16. The single-channel alpha covers the DISPLAY window
        (these formats have no data window): pixels outside the data window are 0,
        overscan outside the display window is dropped.

    Raises
    ------
    UsageError
        Bad extension, compression, bit depth or layer name.
    OutputError
        Shape mismatch, NaN in alpha, unwritable folder, or any write failure; an
        existing file at ``out_path`` is left untouched and no temporary file remains.
    PlateError
        The plate's file can no longer be read (EXR channel copy).
    """
    out_path = str(out_path)
    fmt = output_format(out_path)
    compression = check_compression(compression, fmt, out_path)
    a = _check_alpha(alpha, plate, out_path)
    extra = {name: _check_alpha(values, plate, out_path) for name, values in (channels or {}).items()}
    if extra and fmt != "openexr":
        raise UsageError(f"{fmt.upper()} output holds the alpha only; write .exr for the "
                         f"foreground channels", path=out_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise OutputError(f"output folder {folder} does not exist", path=out_path)
    stamps = stamp_attributes(metadata)
    if fmt == "openexr":
        check_layer(layer, out_path)
        specs, images = _exr_content(a, plate, layer, compression, half, stamps, out_path,
                                     extra, plate_channels)
    else:
        if bit_depth not in (8, 16):
            raise UsageError(f"bit depth must be 8 or 16, got {bit_depth}", path=out_path)
        specs, images = _flat_content(a, plate, fmt, compression, bit_depth, stamps)
    _write_atomic(out_path, specs, images)


def _exr_content(alpha, plate, layer, compression, half, stamps, path, extra=None,
                 plate_channels=True):
    alpha_name = "A" if layer == "rgba" else f"{layer}.alpha"
    alpha_type = oiio.TypeDesc("half" if half else "float")
    if plate is None:
        spec = oiio.ImageSpec(alpha.shape[1], alpha.shape[0], 1, alpha_type)
        spec.channelnames = (alpha_name,)
        spec.alpha_channel = 0 if alpha_name == "A" else -1
        specs, images, target = [spec], [alpha[:, :, None]], None
    elif not plate_channels:
        # the plate part's windows and attributes, none of its channels: added below
        spec = oiio.ImageSpec(plate.spec)
        spec.nchannels = 0
        spec.channelnames = ()
        spec.channelformats = ()
        spec.alpha_channel = -1
        specs, images, target = [spec], [np.empty(alpha.shape + (0,), np.float16)], 0
    else:
        specs, images = _read_all_subimages(plate)
        target = plate.subimage
    into = 0 if target is None else target
    if target is not None or extra:
        added = {} if target is None else {alpha_name: alpha}
        specs[into], images[into] = _add_channels(specs[into], images[into],
                                                  {**added, **(extra or {})}, alpha_type)
    for index, spec in enumerate(specs):
        spec.attribute("compression", compression)
        for name in _STALE_ATTRIBUTES:
            spec.erase_attribute(name)
        if target is None or index == target:
            for key, value in stamps.items():
                spec.attribute(key, value)
        space = stamps.get(METADATA_PREFIX + "colorspace")
        if index == target and isinstance(space, str) and space:
            # the plate's colours (and the foreground) are in the space the run read them
            # in: --plate-colorspace over the file's tag, or a space the file never named.
            # OpenImageIO writes a copied colorInteropID over oiio:ColorSpace: it goes
            spec.erase_attribute("colorInteropID")
            spec.attribute("oiio:ColorSpace", space)
    return specs, images


def _read_all_subimages(plate: Plate):
    """Every subimage of the plate's file: specs (metadata intact) and pixels.

    All-half subimages (the usual Nuke/renderer EXR) are carried as float16, anything
    else as float32. An EXR's 32-bit unsigned channels (a renderer's object ids) stay
    unsigned, exact up to 2**24 (OpenImageIO converts them through float32; larger values
    are rounded, with a warning). 8/16-bit sources (PNG, TIFF, DPX plates) cannot be stored
    in EXR; their channels become half (values within 2**-12 of the originals).
    """
    inp = open_image(plate.path, plate.frame)
    try:
        # an EXR's UINT is an id; a 32-bit TIFF's is a colour, which becomes half like 8/16 bits
        kept = (oiio.HALF, oiio.FLOAT) + ((oiio.UINT,) if inp.format_name() == "openexr" else ())
        specs = subimage_specs(inp)
        images = [read_subimage(inp, i, plate.path, plate.frame, half=_all_half(spec))
                  for i, spec in enumerate(specs)]
        if oiio.UINT in kept:
            for i, spec in enumerate(specs):
                _warn_of_large_ids(inp, i, spec, plate)
    finally:
        inp.close()
    half = oiio.TypeDesc("half")
    for spec in specs:
        formats = [f if f.basetype in kept else half for f in channel_formats(spec)]
        if all(f == formats[0] for f in formats):
            # one type for every channel: OpenImageIO writes the spec's format, whatever
            # channelformats says (a part of UINT ids alone came out half)
            spec.set_format(formats[0])
        else:
            spec.set_format(spec.format if spec.format.basetype in (oiio.HALF, oiio.FLOAT) else half)
        spec.channelformats = tuple(formats)
    return specs, images


def _warn_of_large_ids(inp, index: int, spec, plate: Plate) -> None:
    for c, f in enumerate(channel_formats(spec)):
        if f.basetype != oiio.UINT:
            continue
        values = inp.read_image(index, 0, c, c + 1, oiio.UINT)
        if values is not None and np.asarray(values).max(initial=0) > 2**24:
            log.warning("%s: channel %s holds values above 2**24, which the output stores "
                        "rounded to float32 precision", plate.path, spec.channelnames[c])


def _all_half(spec) -> bool:
    return all(f.basetype == oiio.HALF for f in channel_formats(spec))


def _add_channels(spec, pixels, channels: dict, channel_type):
    """``spec`` and ``pixels`` with ``channels`` (name: (H, W) values) stored as
    ``channel_type``: each replaces the channel of its name or is appended, all in one copy
    of the plate's pixels (one per channel cost a 6K plate 0.6 s with a foreground)."""
    names = list(spec.channelnames)
    formats = channel_formats(spec)
    types = {name: _stored_as(values, channel_type,
                              formats[names.index(name)] if name in names else None)
             for name, values in channels.items()}
    dtype = pixels.dtype
    if dtype == np.float16 and any(t.basetype != oiio.HALF for t in types.values()):
        dtype = np.dtype(np.float32)    # a float channel must not pass through half
    appended = [name for name in channels if name not in names]
    out = np.empty(pixels.shape[:2] + (len(names) + len(appended),), dtype)
    out[:, :, :len(names)] = pixels
    for name in appended:
        names.append(name)
        formats.append(channel_type)
    for name, values in channels.items():
        index = names.index(name)
        out[:, :, index] = values
        formats[index] = types[name]
    new = oiio.ImageSpec(spec)
    new.nchannels = len(names)
    new.channelnames = tuple(names)
    if all(f == formats[0] for f in formats):
        new.set_format(formats[0])  # OpenImageIO writes a uniform part in the spec's format
    new.channelformats = tuple(formats)
    if "A" in channels:
        new.alpha_channel = names.index("A")
    return new, out


def _stored_as(values: np.ndarray, channel_type, replaced) -> "oiio.TypeDesc":
    """How a new channel is stored: ``channel_type``, but float where ``replaced`` (the
    format of the plate's channel of that name) is float, a premultiplied R over a float R
    say, and where a value is beyond half's range (a foreground over a CG sun at 1e5:
    half would hold inf)."""
    if channel_type.basetype == oiio.FLOAT:
        return channel_type
    if replaced is not None and replaced.basetype == oiio.FLOAT:
        return oiio.TypeDesc("float")
    if not np.all(np.abs(values) <= HALF_MAX):
        return oiio.TypeDesc("float")
    return channel_type


def _flat_content(alpha, plate, fmt, compression, bit_depth, stamps):
    if plate is not None:
        alpha = rewindow(alpha, plate.data_window, plate.display_window)
    h, w = alpha.shape
    spec = oiio.ImageSpec(w, h, 1, oiio.UINT8 if bit_depth == 8 else oiio.UINT16)
    spec.channelnames = ("Y",)
    spec.attribute("compression", compression)
    for key, value in stamps.items():
        spec.attribute(key, value)
    # coverage, not colour: no sRGB / gAMA chunk for a colour-managed reader to undo
    spec.attribute("oiio:ColorSpace", "Raw")
    return [spec], [np.clip(alpha, 0.0, 1.0)[:, :, None]]


def _write_atomic(out_path: str, specs, images) -> None:
    entered = False
    try:
        # fsynced: a farm's next step or another user's Nuke reads the file at once
        with atomic_path(out_path, _temp_suffix(out_path), fsync=True, make_folder=False) as tmp:
            entered = True
            _write_image(out_path, tmp, specs, images)
    except HDMattError:
        raise
    except Exception as exc:
        if not entered and isinstance(exc, OSError):
            raise _cannot_create(out_path, exc) from None
        raise OutputError(f"write failed: {exc}", path=out_path) from None


def _write_image(out_path: str, tmp: str, specs, images) -> None:
    # The plugin is chosen from the real output name; the temporary name ends in .tmp.exr
    # anyway, but be explicit so a format never depends on the temp suffix.
    out = oiio.ImageOutput.create(out_path)
    if out is None:
        raise OutputError(f"no writer: {oiio.geterror()}", path=out_path)
    try:
        if len(specs) > 1:
            if not out.supports("multiimage"):
                raise OutputError("format cannot hold several subimages", path=out_path)
            ok = out.open(tmp, tuple(specs))
        else:
            ok = out.open(tmp, specs[0])
        if not ok:
            raise OutputError(f"cannot open for writing: {_error(out)}", path=out_path)
        for index, (spec, pixels) in enumerate(zip(specs, images)):
            if index and not out.open(tmp, spec, "AppendSubimage"):
                raise OutputError(f"cannot append subimage {index}: {_error(out)}", path=out_path)
            if pixels.dtype not in (np.float16, np.float32):
                pixels = pixels.astype(np.float32)
            if not out.write_image(np.ascontiguousarray(pixels)):
                raise OutputError(f"cannot write pixels: {_error(out)}", path=out_path)
    except BaseException:
        out.close()
        raise
    if not out.close():
        raise OutputError(f"cannot finish writing: {_error(out)}", path=out_path)


def _error(out) -> str:
    return " ".join((out.geterror() or oiio.geterror() or "unknown error").split())
