"""Nuke plugin-path init for HDMatt: makes ``nuke_hdmatt`` importable (stdlib parts only).

``install.py`` adds this folder with ``nuke.pluginAddPath``; or set ``NUKE_PATH`` to it
(``install.py --print-nuke-path``). The package sits one folder up. Only the package is made
importable: the checkout itself (tests, benchmarks, install.py) does not go on ``sys.path``,
so nothing there can shadow a studio module. Torch is never imported here: the engine runs as
a separate process.
"""

import importlib.util
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


def _load_package(package_dir):
    """Import ``nuke_hdmatt`` from ``package_dir`` by location; its submodules follow."""
    spec = importlib.util.spec_from_file_location(
        "nuke_hdmatt", os.path.join(package_dir, "__init__.py"),
        submodule_search_locations=[package_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules["nuke_hdmatt"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["nuke_hdmatt"]
        raise


_here = _gizmo_dir()
if _here and "nuke_hdmatt" not in sys.modules:
    _package = os.path.join(os.path.dirname(_here), "nuke_hdmatt")
    if os.path.isfile(os.path.join(_package, "__init__.py")):
        _load_package(_package)
