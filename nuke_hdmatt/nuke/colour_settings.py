"""The script's colour management, as the engine process needs it (stdlib only, no ``nuke``).

The Nuke side renders plate and trimap *raw* in the working space, so the engine must be told
that space and the config it belongs to. Nuke keeps both on the root node:

``colorManagement``       ``Nuke`` (legacy LUTs, i.e. the bundled ``nuke-default`` config) or ``OCIO``
``OCIO_config``           a bundled config's name, or ``custom``
``customOCIOConfigPath``  the config file when ``OCIO_config`` is ``custom``
``workingSpaceLUT``       the working (scene-linear) colour space

``$OCIO`` overrides the root settings (Nuke locks the config to it). Configs Nuke bundles that
are OCIO's own built-ins (``cg-config-...``, ``studio-config-...``, also as Nuke's
``fn-nuke_...`` names) become ``ocio://`` URIs, which the engine's PyOpenColorIO (>= 2.2)
resolves without a file, so engine-only farm workers need no Nuke install. Other bundled
configs (``nuke-default``, ``aces_1.x``) live under
``<Nuke install>/plugins/OCIOConfigs/configs/<name>/config.ocio``; a farm job gets a copy of
that folder (config and LUTs) beside its files (:func:`copy_bundled_config`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from ..errors import ColorSpaceError

__all__ = ["ColourSettings", "resolve_colour", "copy_bundled_config"]

_OCIO_BUILTIN_PREFIXES = ("cg-config-", "studio-config-")


@dataclass(frozen=True)
class ColourSettings:
    """What ``hdmatt matte`` gets: ``--ocio config`` and ``--plate-colorspace space``."""

    config: str
    colorspace: str
    working: str = ""  # the script's working space (what a Read not set to raw delivers)
    bundled: bool = False  # config is a file inside the Nuke install


def _bundled(exe_path: str | None, name: str) -> str | None:
    if not exe_path:
        return None
    path = os.path.join(os.path.dirname(exe_path), "plugins", "OCIOConfigs", "configs", name,
                        "config.ocio")
    return path if os.path.isfile(path) else None


def resolve_colour(root: dict, exe_path: str | None = None, env=None,
                   plate_colorspace: str = "") -> ColourSettings:
    """Turn root knob values into the engine's colour arguments.

    Parameters
    ----------
    root : dict
        Root knob values by name (see the module docstring); missing keys take Nuke's defaults.
    exe_path : str, optional
        ``nuke.EXE_PATH``: where bundled configs are found.
    env : mapping, optional
        Environment (default ``os.environ``), for ``$OCIO``.
    plate_colorspace : str
        The node's plate colour space knob; empty means the working space.

    Raises
    ------
    ColorSpaceError
        The config cannot be located; the message names the root knob to fix.
    """
    env = os.environ if env is None else env
    legacy = str(root.get("colorManagement", "Nuke")) == "Nuke"
    working = str(root.get("workingSpaceLUT") or ("linear" if legacy else "scene_linear"))
    space = plate_colorspace.strip() or working
    if env.get("OCIO"):
        return ColourSettings(env["OCIO"], space, working)
    name = "nuke-default" if legacy else str(root.get("OCIO_config") or "")
    if name == "custom":
        path = str(root.get("customOCIOConfigPath") or "")
        if not path or not (path.startswith("ocio://") or os.path.isfile(path)):
            raise ColorSpaceError(f"root.customOCIOConfigPath: OCIO config {path!r} not found")
        return ColourSettings(path, space, working)
    if name.startswith("ocio://"):
        return ColourSettings(name, space, working)
    short = name[len("fn-nuke_"):] if name.startswith("fn-nuke_") else name
    if short.startswith(_OCIO_BUILTIN_PREFIXES):
        return ColourSettings("ocio://" + short, space, working)
    found = _bundled(exe_path, name)
    if found:
        return ColourSettings(found, space, working, bundled=True)
    knob = "root.colorManagement" if legacy else "root.OCIO_config"
    raise ColorSpaceError(f"{knob}: config {name!r} is not bundled with this Nuke "
                          f"({exe_path or 'unknown install'}); choose a custom config file")


def copy_bundled_config(settings: ColourSettings, folder: str) -> ColourSettings:
    """For a farm job: a config inside the Nuke install copied, with its LUTs, to
    ``<folder>/ocio/<config name>/`` (once; concurrent prepass chunks race safely), so
    engine-only workers find it. Other settings come back unchanged."""
    if not settings.bundled:
        return settings
    src = os.path.dirname(settings.config)
    dest = os.path.join(folder, "ocio", os.path.basename(src))
    if not os.path.isdir(dest):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(src)}.", dir=os.path.dirname(dest))
        try:
            shutil.copytree(src, os.path.join(tmp, "c"))
            try:
                os.rename(os.path.join(tmp, "c"), dest)
            except OSError:
                if not os.path.isdir(dest):  # not another chunk's copy that won the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ColourSettings(os.path.join(dest, os.path.basename(settings.config)).replace("\\", "/"),
                          settings.colorspace, settings.working, bundled=False)
