"""Nuke GUI menu for HDMatt: Nodes toolbar entry (HDMatt > HDMatt)."""

import nuke

_toolbar = nuke.menu("Nodes")
_menu = _toolbar.addMenu("HDMatt")
_menu.addCommand("HDMatt", "nuke.createNode('HDMatt')")
