"""pytest fixture ``fake_nuke``: the ``nuke`` test double, importable only inside a test.

Import it in a test module with ``from nuke_double.fixtures import fake_nuke``. The double
and the modules that imported it are dropped afterwards, so no other test sees a ``nuke``
module and every test starts from an empty script.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GIZMOS = REPO / "gizmos"
# every module that imports nuke: each test gets a fresh double, and these its new module
_NUKE_MODULES = ("nuke", "nuke_hdmatt.nuke.node", "nuke_hdmatt.nuke.knobs",
                 "nuke_hdmatt.nuke.export", "nuke_hdmatt.nuke.generated",
                 "nuke_hdmatt.nuke.prepass")


def _forget():
    for name in _NUKE_MODULES:
        sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        # `from nuke_hdmatt.nuke import node` would find the old module on the package
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is not None:
            delattr(sys.modules[parent], child)


@pytest.fixture
def fake_nuke(monkeypatch):
    _forget()
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delenv("OCIO", raising=False)
    monkeypatch.delenv("NUKE_PATH", raising=False)
    import nuke
    # what Nuke does at start-up with the plugin path install.py registers
    nuke.pluginAddPath(str(GIZMOS), addToSysPath=False)
    runpy.run_path(str(GIZMOS / "init.py"))
    runpy.run_path(str(GIZMOS / "menu.py"))
    yield nuke
    _forget()
    assert "nuke" not in sys.modules
