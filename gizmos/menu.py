"""Nuke GUI menu for HDMatt: Nodes toolbar entry (HDMatt > HDMatt), and the updateUI
callback that keeps each node's status and label current (stale after upstream edits)."""

import nuke

_toolbar = nuke.menu("Nodes")
_menu = _toolbar.addMenu("HDMatt")
_menu.addCommand("HDMatt", "nuke.createNode('HDMatt')")


def _update_ui():
    try:
        from nuke_hdmatt.nuke import node as hdmatt_node
    except ImportError:  # the node renders without it; only its status line goes stale
        return
    hdmatt_node.update_ui()


nuke.addUpdateUI(_update_ui, nodeClass="HDMatt")
