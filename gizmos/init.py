"""Nuke plugin-path init for HDMatt: makes ``nuke_hdmatt`` importable (stdlib parts only).

``install.py`` adds this folder with ``nuke.pluginAddPath``; or set ``NUKE_PATH`` to it
(``install.py --print-nuke-path``). The package sits one folder up. Torch is never imported
here: the engine runs as a separate process.
"""

import os
import sys

import nuke


def _gizmo_dir():
    try:
        return os.path.dirname(os.path.abspath(__file__))
    except NameError:  # some Nuke versions run init.py without __file__
        for path in nuke.pluginPath():
            if os.path.isfile(os.path.join(path, "HDMatt.gizmo")):
                return path
    return None


_here = _gizmo_dir()
if _here:
    _repo = os.path.dirname(_here)
    if _repo not in sys.path:
        sys.path.append(_repo)
