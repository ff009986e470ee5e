"""Nuke GUI menu for HDMatt: Nodes toolbar entry (HDMatt > HDMatt), the updateUI callback
that keeps each node's status and label current (stale after upstream edits), and the
callbacks that stop a node's engine run when the node is deleted or its script closes."""

import nuke

_toolbar = nuke.menu("Nodes")
_menu = _toolbar.addMenu("HDMatt")
_menu.addCommand("HDMatt", "nuke.createNode('HDMatt')")


def _call(name):
    def callback():
        try:
            from nuke_hdmatt.nuke import node as hdmatt_node
        except ImportError:  # the node renders without it; only its status line goes stale
            return
        getattr(hdmatt_node, name)()
    return callback


nuke.addUpdateUI(_call("update_ui"), nodeClass="HDMatt")
nuke.addOnDestroy(_call("on_destroy"), nodeClass="HDMatt")
nuke.addOnScriptClose(_call("on_script_close"))
