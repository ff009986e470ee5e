"""Imaging layer: everything between files on disk and the engine's arrays.

OpenImageIO reads and writes every file; PyOpenColorIO does every colour
conversion. Nothing here imports torch or knows about the network.

Public names are re-exported from small modules:

- :mod:`.plates`   reading plates by channel name (``read_plate``, ``Plate``)
- :mod:`.colour`   OCIO config/colour-space resolution and conversion to the network space
- :mod:`.trimaps`  reading, snapping, generating and validating trimaps
- :mod:`.writing`  atomic alpha output with channel/metadata preservation
- :mod:`.describe` ``describe_image`` / ``read_hdmatt_metadata`` for ``hdmatt info``
"""

from .colour import (
    NETWORK_SPACE,
    config_fingerprint,
    exposure_gain,
    from_scene_linear,
    non_finite_note,
    plate_colorspace,
    resolve_config,
    to_network_space,
    to_scene_linear,
)
from .describe import describe_image, read_hdmatt_metadata
from .plates import Plate, read_plate
from .trimaps import (
    Trimap,
    check_trimap,
    fit_trimap_to_plate,
    has_known,
    has_unknown,
    read_trimap,
    snap_trimap,
    trimap_from_matte,
    trimap_from_plate,
)
from .writing import COMPRESSIONS, write_alpha

__all__ = [
    "Plate", "read_plate",
    "NETWORK_SPACE", "config_fingerprint", "resolve_config", "plate_colorspace", "to_network_space",
    "to_scene_linear", "from_scene_linear", "non_finite_note", "exposure_gain",
    "Trimap", "read_trimap", "trimap_from_plate", "trimap_from_matte", "snap_trimap",
    "check_trimap", "has_known", "has_unknown", "fit_trimap_to_plate",
    "write_alpha", "COMPRESSIONS",
    "read_hdmatt_metadata", "describe_image",
]
