"""Colour: which OCIO config, which colour space a plate is in, and conversion to the
network's input space.

The network was trained on sRGB-encoded Rec.709 images in 0-1 (display-referred photos
composited over backgrounds), so every plate is converted there through OCIO before the
engine sees it. Nothing is guessed silently: the colour space is an argument, else the
file's ``oiio:ColorSpace`` metadata, else a fixed, documented default.

HDR treatment in :func:`to_network_space` (documented here once, referred to elsewhere):

1. NaN and -inf become 0 and +inf becomes 65504 (the largest half value, i.e. a very
   bright highlight) BEFORE conversion, so a single bad channel cannot spread through a
   colour matrix into the other channels of the pixel.
2. The OCIO processor converts to sRGB-encoded Rec.709 (the sRGB curve is extended above
   1 and OCIO mirrors/clamps below 0 as the config defines).
3. The result is clipped to [0, 1]: highlights above display white become white and
   negative (out-of-gamut) values become 0, the range the network was trained on.

Before step 2 the frame's exposure is fitted to the unknown band (:func:`exposure_gain`, a
gain in linear light; ``--exposure fit``, the default). A band with highlights above display
white is darkened: hair over a sky at four times white mixes to pixels far above white,
which the clip would make pure sky, and the alpha there 0. A band below half of white (a
night plate) is brightened to half of it: the sRGB curve's shadows are where the network
saw least contrast in training. A gain is exposure, which the matting equation does not
care about (light adds), so the alpha is that of the plate; frames whose band peaks between
half and full white (most display-referred plates) are converted exactly as before.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os

import numpy as np
import PyOpenColorIO as OCIO

from ..errors import ColorSpaceError

log = logging.getLogger(__name__)

BUILTIN_CONFIG = "ocio://cg-config-latest"

#: Canonical name of the network input space in the built-in config (interop id
#: ``srgb_rec709_scene``).
NETWORK_SPACE = "sRGB Encoded Rec.709 (sRGB)"

# Names the network space goes by in common configs (cg/studio configs, old ACES 1.x
# configs, nuke-default), tried in order when the active config is not the built-in one.
_NETWORK_SPACE_NAMES = ("srgb_rec709_scene", NETWORK_SPACE, "srgb_tx", "sRGB - Texture",
                        "Utility - sRGB - Texture", "Input - Generic - sRGB - Texture",
                        "srgb_texture", "sRGB")

# Pre-interop OpenImageIO names still found in files written by older OIIO/tools.
_LEGACY_METADATA_NAMES = {"linear": "lin_rec709_scene", "srgb": "srgb_rec709_scene"}

# +inf stands for "very bright", so it maps to the largest finite half before clipping.
_POSINF_VALUE = 65504.0


def resolve_config(explicit: str | None = None) -> tuple["OCIO.Config", str]:
    """Load the OCIO config: ``explicit``, else ``$OCIO``, else the built-in cg config.

    Parameters
    ----------
    explicit : str, optional
        Path to a ``.ocio`` file or an ``ocio://`` built-in URI.

    Returns
    -------
    (OCIO.Config, str)
        The config and a description for output metadata, e.g.
        ``"ocio://cg-config-latest (cg-config-v5.0.0_aces-v2.1_ocio-v2.6)"``.

    Raises
    ------
    ColorSpaceError
        The config cannot be loaded; carries OCIO's message and the source
        (argument or $OCIO).
    """
    if explicit:
        source, where = str(explicit), "config argument"
    elif os.environ.get("OCIO"):
        source, where = os.environ["OCIO"], "$OCIO"
    else:
        source, where = BUILTIN_CONFIG, "built-in config"
    if not source.startswith("ocio://") and not os.path.exists(source):
        raise ColorSpaceError(f"OCIO config from {where} not found", path=source)
    try:
        config = OCIO.Config.CreateFromFile(source)
        config.validate()
    except OCIO.Exception as exc:
        raise ColorSpaceError(f"cannot load OCIO config from {where}: {_one_line(exc)}",
                              path=source) from None
    name = config.getName()
    return config, f"{source} ({name})" if name else source


def config_fingerprint(config: "OCIO.Config") -> str:
    """A digest of what the config does, not where it lives: its serialized text plus the
    bytes of every LUT file its transforms reference.

    The same config at two paths (Nuke's install on a workstation, a copy beside a farm
    job's files, an ``ocio://`` built-in and the file it was exported to) gives the same
    digest, so cache entries are shared; an edited LUT changes it.
    """
    h = hashlib.sha256(config.serialize().encode())
    context = config.getCurrentContext()
    for src in sorted(_file_sources(config)):
        h.update(b"\0" + src.encode())
        try:
            path = context.resolveFileLocation(src)
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except (OCIO.Exception, OSError):
            h.update(b"\0missing")  # the conversion will fail and say so; the key still differs
    return "sha256:" + h.hexdigest()


def _file_sources(config: "OCIO.Config") -> set[str]:
    """``src`` of every FileTransform reachable from the config's colour spaces, looks,
    view transforms and named transforms."""
    roots = []
    for cs in config.getColorSpaces():
        roots += [cs.getTransform(OCIO.COLORSPACE_DIR_TO_REFERENCE),
                  cs.getTransform(OCIO.COLORSPACE_DIR_FROM_REFERENCE)]
    for look in config.getLooks():
        roots += [look.getTransform(), look.getInverseTransform()]
    for vt in config.getViewTransforms():
        roots += [vt.getTransform(OCIO.VIEWTRANSFORM_DIR_TO_REFERENCE),
                  vt.getTransform(OCIO.VIEWTRANSFORM_DIR_FROM_REFERENCE)]
    for nt in config.getNamedTransforms():
        roots += [nt.getTransform(OCIO.TRANSFORM_DIR_FORWARD),
                  nt.getTransform(OCIO.TRANSFORM_DIR_INVERSE)]
    found, todo = set(), [t for t in roots if t is not None]
    while todo:
        t = todo.pop()
        if isinstance(t, OCIO.FileTransform):
            found.add(t.getSrc())
        elif isinstance(t, OCIO.GroupTransform):
            todo.extend(t)  # a GroupTransform iterates over its children
    return found


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _all_names(config: "OCIO.Config") -> list[str]:
    names = []
    for cs in config.getColorSpaces():
        names.append(cs.getName())
        names.extend(cs.getAliases())
    names.extend(name for name, _ in config.getRoles())
    return names


def canonical_colorspace(name: str, config: "OCIO.Config", *, path: str | None = None,
                         frame: int | None = None, what: str = "colour space") -> str:
    """Resolve a colour-space name, alias or role to the config's canonical name.

    Raises
    ------
    ColorSpaceError
        Unknown name: OCIO's own message plus the closest valid names (difflib).
    """
    name = (name or "").strip()  # knob values often carry a stray space
    if not name:
        raise ColorSpaceError(f"{what}: empty name", path=path, frame=frame)
    cs = config.getColorSpace(name)  # OCIO matches names, aliases and roles, any case
    if cs is not None:
        return cs.getName()
    try:
        # Ask OCIO for its own wording of the failure, as users search for that text.
        config.getProcessor(name, config.getColorSpaces()[0].getName())
        message = f"unknown {what} {name!r}"
    except OCIO.Exception as exc:
        message = _one_line(exc)
    by_lower = {n.lower(): n for n in _all_names(config)}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    raise ColorSpaceError(f"{what}: {message.rstrip('.')}{hint}", path=path, frame=frame)


def network_space_name(config: "OCIO.Config") -> str | None:
    """Name of sRGB-encoded Rec.709 in ``config``, or None when the config lacks it."""
    for name in _NETWORK_SPACE_NAMES:
        cs = config.getColorSpace(name)
        if cs is not None:
            return cs.getName()
    return None


def plate_colorspace(plate, explicit: str | None, config: "OCIO.Config") -> str:
    """Decide the colour space of a plate, never silently.

    Order: ``explicit``; else the file's ``oiio:ColorSpace`` metadata; else for EXR and
    other half/float files the linear space their ``chromaticities`` name (:data:`PRIMARIES`),
    else the config's ``scene_linear`` role; for 8/16-bit integer formats (PNG, TIFF, JPEG,
    DPX) sRGB-encoded Rec.709, except a film scan's DPX (transfer "Printing density"), whose
    log encoding must be named.

    Parameters
    ----------
    plate : Plate
    explicit : str or None
        A colour-space name, alias or role of ``config``.
    config : OCIO.Config

    Returns
    -------
    str
        Canonical colour-space name in ``config``.

    Raises
    ------
    ColorSpaceError
        Unknown explicit name, or metadata naming a space the config does not know
        (pass one explicitly then), with the closest valid names.
    """
    if explicit:
        return canonical_colorspace(explicit, config, path=plate.path, frame=plate.frame)
    if plate.colorspace:
        meta = plate.colorspace
        if config.getColorSpace(meta) is None and meta.lower() in _LEGACY_METADATA_NAMES:
            meta = _LEGACY_METADATA_NAMES[meta.lower()]
        if (config.getColorSpace(meta) is None and meta.lower() == "srgb_rec709_scene"
                and network_space_name(config) is not None):
            # OpenImageIO names every PNG so, tagged or not: the config's own sRGB space
            return network_space_name(config)  # type: ignore[return-value]
        try:
            return canonical_colorspace(meta, config, path=plate.path, frame=plate.frame,
                                        what="file metadata oiio:ColorSpace")
        except ColorSpaceError as exc:
            raise ColorSpaceError(f"{exc.message}; or give the plate's space with "
                                  "--plate-colorspace", path=plate.path, frame=plate.frame) from None
    spec = getattr(plate, "spec", None)
    transfer = str(spec.getattribute("dpx:Transfer") or "") if spec is not None else ""
    if transfer.lower() == "printing density":
        # a film scan's log encoding, which OpenImageIO names no colour space for: read as
        # sRGB its alpha would be wrong without a word ("Logarithmic" DPX is KodakLog above)
        raise ColorSpaceError("is a film scan (DPX transfer 'Printing density': log-encoded); "
                              "give its colour space with --plate-colorspace (e.g. the "
                              "config's Cineon or ADX space)", path=plate.path, frame=plate.frame)
    if plate.is_float or plate.file_format == "openexr":
        primaries = _named_primaries(spec, config)
        if primaries is not None:
            return primaries
        return canonical_colorspace("scene_linear", config, path=plate.path, frame=plate.frame,
                                    what="scene_linear role")
    name = network_space_name(config)
    if name is None:
        raise ColorSpaceError("no sRGB-encoded Rec.709 colour space in the OCIO config for this "
                              "integer image; pass the colour space explicitly",
                              path=plate.path, frame=plate.frame)
    return name


#: linear spaces by the EXR ``chromaticities`` they state (red, green, blue, white xy), as
#: the names or aliases OCIO configs give them: a file that says AP0 is ACES2065-1 whatever
#: the config's scene_linear role (ACEScg) would assume
PRIMARIES = (
    ((0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767), ("aces_interchange", "ACES2065-1")),
    ((0.713, 0.293, 0.165, 0.83, 0.128, 0.044, 0.32168, 0.33767), ("ACEScg", "lin_ap1")),
    ((0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329), ("lin_rec709", "Linear Rec.709 (sRGB)")),
    ((0.708, 0.292, 0.17, 0.797, 0.131, 0.046, 0.3127, 0.329), ("lin_rec2020", "Linear Rec.2020")),
    ((0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329), ("lin_p3d65", "Linear P3-D65")),
)


def _named_primaries(spec, config: "OCIO.Config") -> str | None:
    """The linear colour space of ``config`` an EXR's ``chromaticities`` name (within
    0.005), or None: no such attribute, primaries not in :data:`PRIMARIES`, or a config
    without that space (the scene_linear role then, as before)."""
    chroma = spec.getattribute("chromaticities") if spec is not None else None
    if not chroma or len(chroma) != 8:
        return None
    for known, names in PRIMARIES:
        if max(abs(a - b) for a, b in zip(chroma, known)) <= 0.005:
            for name in names:
                cs = config.getColorSpace(name)
                if cs is not None:
                    return cs.getName()
    return None


def network_processor(colorspace: str, config: "OCIO.Config") -> "OCIO.CPUProcessor":
    """CPU processor from ``colorspace`` (in ``config``) to sRGB-encoded Rec.709.

    When ``config`` has no sRGB-encoded Rec.709 space, the conversion goes through the
    built-in cg config using the configs' interchange roles (OCIO >= 2.2).
    """
    src = canonical_colorspace(colorspace, config)
    dst = network_space_name(config)
    try:
        if dst is not None:
            proc = config.getProcessor(src, dst)
        else:
            builtin = OCIO.Config.CreateFromFile(BUILTIN_CONFIG)
            proc = OCIO.Config.GetProcessorFromConfigs(config, src, builtin, NETWORK_SPACE)
    except OCIO.Exception as exc:
        raise ColorSpaceError(f"cannot convert {src!r} to sRGB-encoded Rec.709: "
                              f"{_one_line(exc)}") from None
    return proc.getDefaultCPUProcessor()


#: the share (percent) of the unknown band whose peak :func:`exposure_gain` fits; the
#: brightest half percent may clip (a specular glint is no edge)
EXPOSURE_PERCENTILE = 99.5
#: a band peaking below this share of display white is brightened to it (0.5: chosen on the
#: training images among 0, 0.25, 0.5 and 1, benchmarks/RESULTS.md, exposure)
EXPOSURE_FLOOR = 0.5
#: at most this much brighter (8 stops): a band of near-black noise stays noise
MAX_BRIGHTEN = 256.0


def exposure_gain(pixels: np.ndarray, colorspace: str, config: "OCIO.Config",
                  unknown: np.ndarray) -> float:
    """The gain in linear light that fits the ``unknown`` pixels' peak (the
    :data:`EXPOSURE_PERCENTILE` of their largest channel in ``scene_linear``) between
    :data:`EXPOSURE_FLOOR` and display white: 1 / peak above white, floor / peak (at most
    :data:`MAX_BRIGHTEN`) below the floor, else 1 (also when nothing is unknown or black).

    Parameters
    ----------
    pixels : np.ndarray, float, (H, W, 3) in ``colorspace``
    colorspace, config : as for :func:`to_network_space`
    unknown : np.ndarray, bool, (H, W)
    """
    band = np.ascontiguousarray(np.asarray(pixels)[unknown][None])  # (1, N, 3): converted alone
    if not band.size:
        return 1.0
    peak = float(np.percentile(to_scene_linear(band, colorspace, config).max(-1),
                               EXPOSURE_PERCENTILE))
    if peak > 1.0:
        return 1.0 / peak
    if 0.0 < peak < EXPOSURE_FLOOR:
        return min(EXPOSURE_FLOOR / peak, MAX_BRIGHTEN)
    return 1.0


def to_network_space(pixels: np.ndarray, colorspace: str, config: "OCIO.Config",
                     gain: float = 1.0) -> np.ndarray:
    """Convert RGB pixels to the network input space.

    Parameters
    ----------
    pixels : np.ndarray
        float, shape (H, W, 3), in ``colorspace`` (any range; NaN/inf allowed).
    colorspace : str
        Name, alias or role in ``config``.
    config : OCIO.Config
    gain : float
        Exposure applied in ``scene_linear`` first (:func:`exposure_gain`); 1: none.

    Returns
    -------
    np.ndarray
        float32 (H, W, 3), sRGB-encoded Rec.709, every value finite and in [0, 1]. The
        HDR treatment (NaN/inf replacement before conversion, clip to [0, 1] after) is the
        one described in this module's docstring. The input is not modified.

    Raises
    ------
    ColorSpaceError
        Unknown colour space or impossible conversion.
    ValueError
        ``pixels`` is not (H, W, 3).
    """
    rgb = _finite_rgb(pixels)
    height, width = rgb.shape[:2]
    if rgb.size and gain != 1.0:
        rgb = to_scene_linear(rgb, colorspace, config)
        rgb *= np.float32(gain)
        network_processor(OCIO.ROLE_SCENE_LINEAR, config).apply(
            OCIO.PackedImageDesc(rgb, width, height, 3))
    elif rgb.size:
        cpu = network_processor(colorspace, config)
        cpu.apply(OCIO.PackedImageDesc(rgb, width, height, 3))
    _replace_non_finite(rgb, posinf=1.0)
    n_clipped = int(((rgb < 0.0) | (rgb > 1.0)).sum())
    if n_clipped:
        log.info("%d value(s) outside [0, 1] after conversion to sRGB-encoded Rec.709 clipped",
                 n_clipped)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def non_finite_note(pixels: np.ndarray) -> str | None:
    """What step 1 of the HDR treatment will replace in ``pixels``, in words for the user
    (None: every value is finite). The conversions replace silently: the caller says it
    once per frame, naming the file."""
    n_bad = int(np.count_nonzero(~np.isfinite(pixels)))
    if not n_bad:
        return None
    return (f"{n_bad} non-finite plate value(s) replaced (NaN, -inf -> 0; "
            f"+inf -> {_POSINF_VALUE:g})")


def _finite_rgb(pixels: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy of (H, W, 3) ``pixels`` with step 1 of the HDR
    treatment (NaN, -inf -> 0; +inf -> 65504) applied."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) pixels, got shape {pixels.shape}")
    rgb = np.array(pixels, dtype=np.float32, order="C", copy=True)
    return _replace_non_finite(rgb, posinf=_POSINF_VALUE)


def _replace_non_finite(values: np.ndarray, posinf: float, neginf: float = 0.0) -> np.ndarray:
    """NaN -> 0, +inf -> ``posinf``, -inf -> ``neginf``, in place. Checked first: on the
    usual all-finite 6K plate the check is 0.03 s where ``nan_to_num``'s masks cost 0.5 s."""
    if not np.isfinite(values).all():
        np.nan_to_num(values, copy=False, nan=0.0, posinf=posinf, neginf=neginf)
    return values


def check_scene_linear(colorspace: str, config: "OCIO.Config") -> None:
    """Raise :class:`ColorSpaceError` now if ``colorspace`` cannot go to ``scene_linear``
    and back (before a frame is computed, not after)."""
    for inverse in (False, True):
        _scene_linear_processor(colorspace, config, inverse)


def _scene_linear_processor(colorspace: str, config: "OCIO.Config", inverse: bool):
    src = canonical_colorspace(colorspace, config)
    if config.getColorSpace(OCIO.ROLE_SCENE_LINEAR) is None:
        raise ColorSpaceError("the OCIO config has no scene_linear role (the exposure fit "
                              "and the foreground colour work in linear light: give a config "
                              "with one, or --exposure off and no foreground output)")
    try:
        proc = (config.getProcessor(OCIO.ROLE_SCENE_LINEAR, src) if inverse else
                config.getProcessor(src, OCIO.ROLE_SCENE_LINEAR))
    except OCIO.Exception as exc:
        raise ColorSpaceError(f"cannot convert between {src!r} and scene_linear: "
                              f"{_one_line(exc)}") from None
    return proc.getDefaultCPUProcessor()


def to_scene_linear(pixels: np.ndarray, colorspace: str, config: "OCIO.Config") -> np.ndarray:
    """Plate RGB in ``colorspace`` -> the config's ``scene_linear`` role, where the matting
    equation (light adds) holds.

    Parameters
    ----------
    pixels : np.ndarray, float, shape (H, W, 3), any range (NaN/inf allowed)
    colorspace, config : as for :func:`to_network_space`

    Returns
    -------
    np.ndarray
        float32 (H, W, 3), finite (step 1 of the HDR treatment), NOT clipped: highlights
        above 1 and negative values stay.
    """
    rgb = _finite_rgb(pixels)
    if rgb.size:
        _scene_linear_processor(colorspace, config, False).apply(
            OCIO.PackedImageDesc(rgb, rgb.shape[1], rgb.shape[0], 3))
    return _replace_non_finite(rgb, posinf=_POSINF_VALUE, neginf=-_POSINF_VALUE)


def from_scene_linear(pixels: np.ndarray, colorspace: str, config: "OCIO.Config") -> np.ndarray:
    """The inverse of :func:`to_scene_linear`: float32 (H, W, 3) in ``colorspace``."""
    rgb = np.array(pixels, dtype=np.float32, order="C", copy=True)
    if rgb.size:
        _scene_linear_processor(colorspace, config, True).apply(
            OCIO.PackedImageDesc(rgb, rgb.shape[1], rgb.shape[0], 3))
    return _replace_non_finite(rgb, posinf=_POSINF_VALUE, neginf=-_POSINF_VALUE)
