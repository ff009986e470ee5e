"""What an HDMatt node's knobs say: their text and values as Nuke users expect (TCL and
``$env(VAR)`` expanded; nodes saved before a knob existed), the alpha sequence the node's
Read shows, the plate's colour, and the engine call the knobs ask for (its settings are the
engine's own :class:`~nuke_hdmatt.engine.settings.InferenceSettings`, so a value the engine
would refuse is refused here, naming the node, before any export).

Imports ``nuke``; main thread only (knob values, expressions and the node graph).
"""

from __future__ import annotations

import nuke

from ..engine.settings import DEFAULT_SNAP, FIXED_DETAIL, InferenceSettings
from ..errors import ColorSpaceError, UsageError
from ..exposure import exposure_value
from ..sequence import FrameSequence, format_frames
from .colour_settings import resolve_colour
from .engine_call import EngineCall
from .export import INPUTS, views

__all__ = ["TRIMAP_CHANNELS", "FOREGROUND_OUTPUTS", "STALE_KNOBS", "knob_text", "knob_value",
           "input_warnings", "plate_colour", "inference_settings", "matte_job",
           "foreground_output", "alpha_pattern", "alpha_sequence", "alpha_sequences"]

TRIMAP_CHANNELS = {"alpha": "A", "red": "R"}
# foreground_output knob values: what the engine is asked for (layer, premultiplied rgb). Both
# foreground outputs ask for both, so switching between them needs no re-run (and is not stale).
FOREGROUND_OUTPUTS = {"alpha only": ("", False),
                      "alpha + foreground layer": ("fg", True),
                      "premultiplied foreground": ("fg", True)}
ROOT_COLOUR_KNOBS = ("colorManagement", "OCIO_config", "customOCIOConfigPath", "workingSpaceLUT")
# what a knob-changed callback refreshes the node's status for: every knob read below that
# decides the alpha (a new engine setting's knob goes here too), the frames and the inputs
STALE_KNOBS = ("alpha_file", "frames", "inputChange", "band", "trimap_channel",
               "plate_colorspace", "patch", "overlap", "k", "pool", "precision", "prior",
               "detail", "detail_auto", "flip", "snap", "exposure", "foreground_output")


def knob_text(node, name: str) -> str:
    """A text knob's value with its TCL and ``$env(VAR)`` expanded, as Nuke users expect."""
    knob = node[name]
    if hasattr(knob, "evaluate"):
        return str(knob.evaluate()).strip()
    raw = str(knob.value())
    return nuke.tcl("subst", raw).strip() if ("[" in raw or "$" in raw) else raw.strip()


def knob_value(node, name: str, default):
    # nodes saved before the knob existed (or converted to plain groups) lack it
    knob = node.knob(name)
    return default if knob is None else knob.value()


def _root_colour() -> dict:
    root = nuke.root()
    return {k: root[k].value() for k in ROOT_COLOUR_KNOBS if root.knob(k) is not None}


def _detail(node) -> float | str:
    """``auto`` with predict detail on; else the slider's step. Nodes without the checkbox
    (plain groups converted before it existed) keep the step they were given."""
    if knob_value(node, "detail_auto", False):
        return "auto"
    return float(knob_value(node, "detail", FIXED_DETAIL))


def _upstream_read(node, index: int = 0):
    """The Read feeding input ``index`` (0: the plate) through pass-through nodes, or None."""
    n = node.input(index)
    while n is not None and n.Class() in ("Dot", "NoOp", "Crop", "Reformat"):
        n = n.input(0)
    return n if n is not None and n.Class() == "Read" else None


def _is_raw(read) -> bool:
    return read.knob("raw") is not None and bool(read["raw"].value())


def _upstream_read_space(node, index: int = 0) -> str | None:
    """The file colour space of a (not raw) Read feeding input ``index`` (0: the plate)
    through pass-through nodes."""
    n = _upstream_read(node, index)
    if n is None or n.knob("colorspace") is None or _is_raw(n):
        return None
    return str(n["colorspace"].value()) or None


# colour space names of curved (display, video, log) encodings: a Read converting from one
# bends the values it delivers
_CURVED = ("srgb", "rec709", "rec.709", "rec1886", "gamma", "log", "output", "display", "video")


def _in_working_space(read) -> bool:
    """The file colour space a Read names (raw or not: ``default (ACEScg)`` included) is the
    script's working space: its raw pixels are what the working space holds."""
    knob, root = read.knob("colorspace"), nuke.root()
    working = str(root["workingSpaceLUT"].value()) if root.knob("workingSpaceLUT") else ""
    return bool(knob is not None and working and working in str(knob.value()))


def input_warnings(node) -> list[str]:
    """The trimap or matte arriving through a Read that converts from a curved colour space:
    a trimap holds codes, not colours (its 0.5 arrives as about 0.21 from sRGB, which the
    engine may read as background); the plate through a raw Read while *plate colour space*
    is empty (the working space): its pixels are the file's, in whatever it encodes."""
    out = []
    plate = _upstream_read(node)
    if plate is not None and _is_raw(plate) and not knob_text(node, "plate_colorspace") \
            and not _in_working_space(plate):
        out.append(f"the plate input's Read {plate.name()} is raw, so its pixels arrive as the "
                   "file stores them, but plate colour space is empty (the working space): set "
                   "it to the file's colour space, or untick raw")
    for index in (1, 2):
        space = _upstream_read_space(node, index)
        if space and any(word in space.lower() for word in _CURVED):
            out.append(f"the {INPUTS[index][0]} input's Read converts from {space!r}, which moves "
                       "its values (a trimap's 0.5 arrives as about 0.21); tick raw on that Read")
    return out


def plate_colour(node):
    """Resolve the colour settings; refuses the space the plate's Read converted from."""
    space = knob_text(node, "plate_colorspace")
    colour = resolve_colour(_root_colour(), getattr(nuke, "EXE_PATH", None), plate_colorspace=space)
    file_space = _upstream_read_space(node)
    if space and file_space and space == file_space and space != colour.working:
        raise ColorSpaceError(
            f"{node.name()}.plate_colorspace: {space!r} is the plate Read's file colour space, "
            "but the Read already converts to the working space; leave the knob empty (it is "
            "the space of the pixels arriving at the node)")
    return colour


def inference_settings(node) -> InferenceSettings:
    """The engine settings of ``node``'s knobs; a value out of range is a UsageError naming
    the node (the engine would refuse it too, after the export)."""
    try:
        return InferenceSettings(
            patch=int(node["patch"].value()), overlap=int(node["overlap"].value()),
            k=int(node["k"].value()), pool=int(node["pool"].value()),
            precision=node["precision"].value(), prior=knob_value(node, "prior", "auto"),
            detail=_detail(node), flip=bool(knob_value(node, "flip", True)),
            snap=float(knob_value(node, "snap", DEFAULT_SNAP)))
    except ValueError as exc:
        raise UsageError(f"{node.name()}: {exc}") from None


def matte_job(node, paths: dict, frames: list[int], colour=None) -> EngineCall:
    """The engine call for ``node``'s knobs, the exported ``paths`` and ``frames``."""
    colour = colour or plate_colour(node)
    return EngineCall(
        plate=paths["plate"], trimap=paths["trimap"], matte=paths["matte"],
        band=int(node["band"].value()), output=alpha_pattern(node),
        frames=format_frames(frames),
        trimap_channel=TRIMAP_CHANNELS[node["trimap_channel"].value()],
        plate_colorspace=colour.colorspace, ocio=colour.config,
        cache=knob_text(node, "cache"), device=node["device"].value(),
        settings=inference_settings(node), exposure=_exposure(node),
        foreground=foreground_output(node)[0], premultiplied=foreground_output(node)[1])


def _exposure(node) -> str:
    """The exposure knob as the engine's ``--exposure`` value (nodes without it: fit)."""
    try:
        return exposure_value(knob_value(node, "exposure", "fit") or "fit")
    except ValueError as exc:
        raise UsageError(f"{node.name()}.exposure: {exc}") from None


def foreground_output(node) -> tuple:
    """(foreground layer or "", premultiplied) for the knob."""
    value = knob_value(node, "foreground_output", "alpha only")
    return FOREGROUND_OUTPUTS.get(value, FOREGROUND_OUTPUTS["alpha only"])


def alpha_pattern(node) -> str:
    """The alpha sequence the node's Read shows: TCL expanded, frame (and ``%V``)
    placeholders kept."""
    text = nuke.filename(node.node("alpha_read")) or ""
    if not text.strip():
        raise UsageError(f"{node.name()}.alpha_file: empty; set an alpha sequence "
                         "(e.g. /shots/a/hdmatt/alpha.####.exr)")
    return text.replace("\\", "/")


def alpha_sequence(node, view: str | None = None) -> FrameSequence:
    """:func:`alpha_pattern` for one view (default: the script's first)."""
    return FrameSequence(alpha_pattern(node).replace("%V", view or views()[0]))


def alpha_sequences(node) -> list[FrameSequence]:
    """The alpha sequence of each view the node writes (one without ``%V``)."""
    pattern = alpha_pattern(node)
    return [FrameSequence(pattern.replace("%V", v)) for v in (views() if "%V" in pattern else [""])]
