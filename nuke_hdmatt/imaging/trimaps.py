"""Trimaps: read from a file or a plate channel, generate from a matte, snap, validate.

Every trimap handed to the engine is float32 (H, W) holding exactly 0 (background),
0.5 (unknown) or 1 (foreground), over the same data window as the plate.

Snapping (:func:`snap_trimap`), applied after scaling to 0-1: within 0.2 of 0 is background,
within 0.2 of 1 foreground, the rest unknown (:data:`~nuke_hdmatt.trimap_snap.FILE_TOLERANCE`,
whose docstring says why). This accepts 0/0.5/1 floats, 0/128/255 and 0/102/255 8-bit
trimaps (128/255 = 0.502, 102/255 = 0.4) and anti-aliased painted trimaps. Raw code arrays
(an integer array with max > 1, or a float array most of whose non-zero values are above 2)
are divided by 255 (max <= 255) or 65535 first; other float values above 1 are overshoot
(a filter's ringing, a hot pixel) and count as foreground.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import SizeMismatchError, TrimapError
from ..sequence import frame_file
from ..trimap_snap import FILE_TOLERANCE, snap
from .plates import (
    Window,
    find_part,
    open_image,
    parse_channels,
    part_for,
    read_plate,
    rewindow,
    subimage_specs,
)

log = logging.getLogger(__name__)

RAW_CODES_ABOVE = 2.0
#: The least share of a trimap's pixels within 0.05 of 0, of 1 or of its most common level
#: between 0.2 and 0.8: the dev set's trimaps have all of them, a trimap blurred by 8 px
#: 0.77, ground-truth alphas 0.92-0.99, and photographs 0.13-0.42 (a plate given as the
#: trimap, or plate and trimap swapped, would otherwise run for minutes on an unknown
#: region covering most of the frame)
LEVEL_SHARE = 0.6
_DEFAULT_CHANNELS = ("A", "R", "Y")
#: Tiles of :func:`_erode_disk` (on a 6K matte 256 px took 0.23 s, 128 px 0.24, 512 px 0.30)
ERODE_TILE = 256


@dataclass
class Trimap:
    """A snapped trimap and where it came from.

    Attributes
    ----------
    values : np.ndarray
        float32 (H, W) over the data window, exactly 0, 0.5 or 1.
    data_window, display_window : tuple of int or None
        ``(x, y, width, height)``; None for a trimap generated from an array.
    path : str or None
    frame : int or None
    channel : str or None
        The channel actually used (after defaulting).
    """

    values: np.ndarray
    data_window: Window | None = None
    display_window: Window | None = None
    path: str | None = None
    frame: int | None = None
    channel: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape


def snap_trimap(values: np.ndarray, source: str = "") -> np.ndarray:
    """Snap any common trimap encoding to exactly {0, 0.5, 1}.

    Parameters
    ----------
    values : np.ndarray
        (H, W) or (H, W, 1), any numeric dtype: 0-1 floats, or raw 0-255 / 0-65535 values.
    source : str
        File/channel named in errors.

    Returns
    -------
    np.ndarray
        float32 (H, W), values in {0, 0.5, 1}; thresholds in the module docstring.

    Raises
    ------
    TrimapError
        NaN/inf values, not a 2D array, or values that are not a trimap's
        (:data:`LEVEL_SHARE`).
    """
    v = np.asarray(values)
    if v.ndim == 3 and v.shape[2] == 1:
        v = v[:, :, 0]
    if v.ndim != 2:
        raise TrimapError(f"trimap must be a single channel, got shape {v.shape}", path=source or None)
    integer = np.issubdtype(v.dtype, np.integer)
    v = v.astype(np.float32)
    bad = ~np.isfinite(v)
    if bad.any():
        raise TrimapError(f"{int(bad.sum())} NaN/inf value(s) in the trimap", path=source or None)
    peak = float(v.max()) if v.size else 0.0
    # Files read through OIIO are already 0-1. Values up to 2 are a float trimap with
    # filter overshoot (a blurred or transformed roto), not 8-bit codes; nor is a 0-1 float
    # trimap with a few hot pixels (codes put every lit pixel above 2).
    if (integer and peak > 1.0) or (peak > RAW_CODES_ABOVE and _mostly_codes(v)):
        v = v / (65535.0 if peak > 255.0 else 255.0)
    share = level_share(v)
    if share < LEVEL_SHARE:
        raise TrimapError(f"does not look like a trimap: only {share:.0%} of its pixels are near "
                          f"0, 1 or one unknown level (a trimap has at least {LEVEL_SHARE:.0%}; "
                          "a plate or a soft matte given as the trimap?)", path=source or None)
    return snap(v, FILE_TOLERANCE)


def _mostly_codes(v: np.ndarray) -> bool:
    """Most of the float array's non-zero values above :data:`RAW_CODES_ABOVE`."""
    lit = int(np.count_nonzero(v > 0.0))
    return lit > 0 and int(np.count_nonzero(v > RAW_CODES_ABOVE)) * 2 > lit


def level_share(values: np.ndarray) -> float:
    """The share of ``values`` (0-1, overshoot allowed) within 0.05 of 0, of 1 or of their
    most common level between 0.2 and 0.8, counted on at most about a million of them."""
    step = max(1, int(np.sqrt(values.size / 2 ** 20)))
    codes = np.clip(np.rint(values[::step, ::step] * 255), 0, 255).astype(np.intp)
    counts = np.bincount(codes.ravel(), minlength=256)
    level = 51 + int(np.argmax(counts[51:205]))          # 0.2-0.8
    near = counts[:14].sum() + counts[242:].sum() + counts[level - 13:level + 14].sum()
    return float(near) / max(1, codes.size)


def has_unknown(trimap) -> bool:
    """True when the trimap has at least one unknown (0.5) pixel.

    A trimap without unknown pixels needs no network run: the trimap itself is the
    alpha (the caller should say so to the user).
    """
    values = trimap.values if isinstance(trimap, Trimap) else np.asarray(trimap)
    return bool((values == 0.5).any())


def has_known(trimap) -> bool:
    """True when the trimap marks at least one pixel as foreground (1) or background (0).

    A trimap that is unknown everywhere gives the matte nothing to start from: usually
    the wrong file or channel (the caller should say so to the user).
    """
    values = trimap.values if isinstance(trimap, Trimap) else np.asarray(trimap)
    return bool(((values == 0) | (values == 1)).any())


def is_constant(values: np.ndarray) -> bool:
    """Every value the same: an opaque alpha saved with a painted trimap or roto carries
    nothing (the painted channels do)."""
    return bool(values.size) and float(values.min()) == float(values.max())


def _default_channel(path: str, frame: int | None, part: str | None = None) -> str:
    inp = open_image(path, frame)
    try:
        specs = subimage_specs(inp)
    finally:
        inp.close()
    names = list(specs[(find_part(specs, part) or 0) if part is not None else 0].channelnames)
    present = [c for c in _DEFAULT_CHANNELS if c in names]
    if not present:
        if len(names) == 1:
            return names[0]
        raise TrimapError(f"no A, R or Y channel; pick one of: {', '.join(names)}",
                          path=path, frame=frame)
    return present[0]


def read_trimap(path: str, channel: str | None = None, frame: int | None = None,
                part: str | None = None) -> Trimap:
    """Read a trimap from an image file.

    Parameters
    ----------
    path : str
        Any OpenImageIO-readable image; frame placeholder allowed.
    channel : str, optional
        Channel name. Default: the first of A, R, Y present (a single-channel image uses
        its only channel). A constant A channel (an opaque RGBA painting whose trimap is in
        RGB) carries no trimap, so then R is used instead and a warning is logged.
    frame : int, optional
    part : str, optional
        The plate's part (``--part``): the trimap's part of that name or number when the
        file has one (a stereo trimap's ``right``); a trimap of one part serves every part,
        one of several without it is refused (:func:`~.plates.part_for`).

    Returns
    -------
    Trimap
        Snapped values over the file's data window (see :func:`snap_trimap`).

    Raises
    ------
    MissingFileError, PlateError, ChannelError, TrimapError
    """
    concrete = frame_file(path, frame)
    own = part_for(concrete, part, frame)
    chosen = channel or _default_channel(concrete, frame, own)
    plate = read_plate(concrete, [chosen], frame=frame, part=own)
    raw = plate.pixels[:, :, 0]
    fallback = next((c for c in ("R", "Y") if c in plate.spec.channelnames), None)
    if channel is None and chosen == "A" and fallback and is_constant(raw):
        log.warning("%s: alpha channel is constant %g, reading the trimap from %s instead",
                    concrete, float(raw.min()), fallback)
        chosen = fallback
        plate = read_plate(concrete, [chosen], frame=frame, part=own)
        raw = plate.pixels[:, :, 0]
    values = snap_trimap(raw, source=f"{concrete} channel {chosen}")
    return Trimap(values=values, data_window=plate.data_window,
                  display_window=plate.display_window, path=concrete, frame=frame,
                  channel=chosen)


def trimap_from_plate(plate_path: str, channel: str, frame: int | None = None) -> Trimap:
    """Read a trimap stored as a channel of the plate itself, e.g. ``matte.trimap``.

    Same result and errors as :func:`read_trimap` with an explicit channel; every
    subimage (EXR part) is searched for the channel.
    """
    (name,) = parse_channels(channel)[:1]
    return read_trimap(plate_path, channel=name, frame=frame)


def trimap_from_matte(matte: np.ndarray, band: int, lo: float = 0.05,
                      hi: float = 0.95) -> np.ndarray:
    """Generate a trimap from a matte or roto alpha.

    Foreground where ``matte >= hi``, background where ``matte <= lo``, unknown in between,
    and the unknown region is widened by ``band`` pixels on both sides of every edge by
    eroding the foreground and background with a Euclidean disk of radius ``band``. The
    image border is not an edge (a matte touching the frame stays known there).

    Parameters
    ----------
    matte : np.ndarray
        float (H, W) or (H, W, 1), 0-1.
    band : int
        Unknown band half-width in pixels (>= 0).
    lo, hi : float
        Known-background and known-foreground thresholds, ``0 <= lo < hi <= 1``.

    Returns
    -------
    np.ndarray
        float32 (H, W) in {0, 0.5, 1}.

    Raises
    ------
    TrimapError
        NaN/inf in the matte, wrong shape, negative band or bad thresholds.
    """
    m = np.asarray(matte, dtype=np.float32)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise TrimapError(f"matte must be a single channel, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise TrimapError("NaN/inf values in the matte")
    if band < 0 or int(band) != band:
        raise TrimapError(f"unknown band must be a whole number of pixels >= 0, got {band}")
    if not 0.0 <= lo < hi <= 1.0:
        raise TrimapError(f"need 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    fg = m >= hi
    bg = m <= lo
    if band > 0:
        # Distance to the nearest pixel outside the region; padding with the region itself
        # keeps the frame border from counting as an edge.
        fg = _erode_disk(fg, band)
        bg = _erode_disk(bg, band)
    out = np.full(m.shape, 0.5, dtype=np.float32)
    out[fg] = 1.0
    out[bg] = 0.0
    return out


def _erode_disk(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` less every pixel within ``radius`` (Euclidean) of a pixel outside it, the
    frame's border not counting as outside (the region is padded with itself).

    Tile by tile: a tile's answer needs only the tile and ``radius + 1`` pixels around it, and
    tiles whose surroundings are all inside (or that hold none of the region) keep their
    pixels, so the distance transform runs near the region's edges alone (a 6K roto matte:
    0.23 s instead of 3.4 s for the whole frame, the same pixels)."""
    if not region.any() or region.all():
        return region
    pad = int(radius) + 1
    padded = np.pad(region, pad, mode="edge")
    out = region.copy()
    h, w = region.shape
    for y0 in range(0, h, ERODE_TILE):
        for x0 in range(0, w, ERODE_TILE):
            th, tw = min(ERODE_TILE, h - y0), min(ERODE_TILE, w - x0)
            around = padded[y0:y0 + th + 2 * pad, x0:x0 + tw + 2 * pad]
            if around.all() or not out[y0:y0 + th, x0:x0 + tw].any():
                continue
            dist = ndimage.distance_transform_edt(around)
            out[y0:y0 + th, x0:x0 + tw] = dist[pad:pad + th, pad:pad + tw] > radius
    return out


def check_trimap(trimap, plate) -> None:
    """Validate a trimap against the plate it will matte.

    Parameters
    ----------
    trimap : Trimap or np.ndarray
        float32 (H, W), snapped.
    plate : Plate

    Raises
    ------
    SizeMismatchError
        Different size, or (for a Trimap read from a file) a different data window. Use
        :func:`fit_trimap_to_plate` to crop a larger trimap explicitly.
    TrimapError
        NaN/inf, or values other than 0, 0.5, 1 (not snapped).
    """
    values = trimap.values if isinstance(trimap, Trimap) else np.asarray(trimap)
    path = trimap.path if isinstance(trimap, Trimap) else None
    frame = trimap.frame if isinstance(trimap, Trimap) else plate.frame
    h, w = plate.pixels.shape[:2]
    if values.shape != (h, w):
        raise SizeMismatchError(
            f"trimap is {_size(values.shape)} but plate {plate.path} is {w}x{h} "
            f"(data window {plate.data_window})", path=path, frame=frame)
    if isinstance(trimap, Trimap) and trimap.data_window is not None \
            and trimap.data_window[:2] != plate.data_window[:2]:
        raise SizeMismatchError(
            f"trimap data window {trimap.data_window} does not line up with plate "
            f"{plate.path} data window {plate.data_window}", path=path, frame=frame)
    if not np.isfinite(values).all():
        raise TrimapError("NaN/inf values in the trimap", path=path, frame=frame)
    if not np.isin(values, (0.0, 0.5, 1.0)).all():
        raise TrimapError("trimap values must be 0, 0.5 or 1 (snap it first)",
                          path=path, frame=frame)


def _size(shape) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(shape)


def fit_to_plate(values: np.ndarray, data_window: Window | None,
                 display_window: Window | None, plate, what: str = "trimap",
                 path: str | None = None, frame: int | None = None) -> np.ndarray:
    """A trimap's or matte's (H, W) values over the plate's data window.

    Same data window: returned unchanged. A different data window inside the SAME display
    window (an EXR bbox, or a full-frame PNG trimap for a cropped EXR plate) is what Nuke
    does with two images of one format: the values are cropped to the plate's data window
    and filled with 0 (background) where the plate's window reaches outside theirs. Any
    other difference in size is an error: stretching or cropping to a corner would put
    the trimap on the wrong pixels.

    Raises
    ------
    SizeMismatchError
        Names both sizes (and windows).
    """
    ph, pw = plate.pixels.shape[:2]
    h, w = values.shape[:2]
    if data_window is None or tuple(data_window) == tuple(plate.data_window):
        if (h, w) != (ph, pw):
            raise SizeMismatchError(f"{what} is {w}x{h} but plate {plate.path} is {pw}x{ph}",
                                    path=path, frame=frame)
        return values
    if display_window is None or tuple(display_window) != tuple(plate.display_window):
        raise SizeMismatchError(
            f"{what} is {w}x{h} (display window {_window_text(display_window)}) but plate "
            f"{plate.path} is {pw}x{ph} (display window {_window_text(plate.display_window)}); "
            "sizes must match, or differ only in data window inside one display window",
            path=path, frame=frame)
    return rewindow(values, (*data_window[:2], w, h), plate.data_window)


def _window_text(window) -> str:
    if window is None:
        return "none"
    x, y, w, h = window
    return f"{w}x{h} at ({x}, {y})"


def fit_trimap_to_plate(trimap: Trimap, plate) -> Trimap:
    """The trimap over the plate's data window (see :func:`fit_to_plate`); identical
    windows return the trimap unchanged."""
    values = fit_to_plate(trimap.values, trimap.data_window, trimap.display_window, plate,
                          "trimap", trimap.path, trimap.frame)
    if values is trimap.values:
        return trimap
    return Trimap(values=values, data_window=plate.data_window,
                  display_window=trimap.display_window, path=trimap.path,
                  frame=trimap.frame, channel=trimap.channel)
