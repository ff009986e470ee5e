"""What is in an image file, for ``hdmatt info``: channels, windows, parts, colour
space, and the ``hdmatt:*`` stamp left by :func:`write_alpha`."""

from __future__ import annotations

import json

from ..sequence import frame_file
from .plates import channel_formats, open_image, subimage_specs, window_of
from .writing import METADATA_PREFIX


def describe_image(path: str, frame: int | None = None) -> dict:
    """Summarise an image file without reading its pixels.

    Parameters
    ----------
    path : str
        Any OpenImageIO-readable file; frame placeholder allowed.
    frame : int, optional

    Returns
    -------
    dict
        ``path``, ``format`` (OIIO format name) and ``subimages`` (a list, one entry per
        EXR part, each with ``index``, ``name``, ``channels``, ``layers``
        (:func:`channel_layers`), ``channel_formats``, ``data_window``, ``display_window``
        (x, y, width, height), ``tile`` ((w, h) or None), ``colorspace`` (oiio:ColorSpace or
        None), ``compression``). The first
        subimage's ``channels``, ``data_window``, ``display_window`` and ``colorspace``
        are repeated at the top level for convenience.

    Raises
    ------
    MissingFileError, PlateError
    """
    path = frame_file(path, frame)
    inp = open_image(path, frame)
    try:
        fmt = inp.format_name()
        specs = subimage_specs(inp)
    finally:
        inp.close()
    parts = []
    for index, spec in enumerate(specs):
        data, display = window_of(spec)
        formats = channel_formats(spec)
        parts.append({
            "index": index,
            "name": spec.getattribute("oiio:subimagename"),
            "channels": list(spec.channelnames),
            "layers": channel_layers(spec.channelnames),
            "channel_formats": [str(f) for f in formats],
            "data_window": data,
            "display_window": display,
            "tile": (spec.tile_width, spec.tile_height) if spec.tile_width else None,
            "colorspace": spec.getattribute("oiio:ColorSpace") or None,
            "compression": spec.getattribute("compression"),
        })
    first = parts[0]
    return {"path": path, "format": fmt, "channels": first["channels"],
            "data_window": first["data_window"], "display_window": first["display_window"],
            "colorspace": first["colorspace"], "subimages": parts}


def channel_layers(channels) -> dict[str, list[str]]:
    """Channels grouped by layer, as Nuke shows them: ``fg.R`` is channel R of layer fg;
    a name without a dot belongs to ``rgba``. Layers in order of first appearance."""
    layers: dict[str, list[str]] = {}
    for name in channels:
        layer, _, channel = name.rpartition(".")
        layers.setdefault(layer or "rgba", []).append(channel)
    return layers


def read_hdmatt_metadata(path: str, frame: int | None = None) -> dict:
    """The ``hdmatt:*`` attributes of a file written by :func:`write_alpha`.

    Returns
    -------
    dict
        Keys without the ``hdmatt:`` prefix; values JSON-decoded where they were stored
        as JSON (parameter dicts), else as stored. Empty when the file has no stamp.
        All subimages are searched (the stamp sits on the part holding the alpha).
    """
    path = frame_file(path, frame)
    inp = open_image(path, frame)
    try:
        specs = subimage_specs(inp)
    finally:
        inp.close()
    found = {}
    for spec in specs:
        for attr in spec.extra_attribs:
            if attr.name.startswith(METADATA_PREFIX):
                found[attr.name[len(METADATA_PREFIX):]] = _decode(attr.value)
    return found


def _decode(value):
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
