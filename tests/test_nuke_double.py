"""The ``nuke`` test double cannot drift from Nuke's API: its signatures and class hierarchy
against literal expectations read from the PyPI ``types-nuke`` 13.2.8.0 stubs
(``nuke-stubs/_nuke.pyi``, ``__init__.pyi``; stubs with ``*args, **kwargs`` are not listed:
they constrain nothing). The stub wheel is not downloadable in CI, hence literals."""

from __future__ import annotations

import inspect

import pytest

from nuke_double.fixtures import fake_nuke  # noqa: F401

STUB_VERSION = "types-nuke 13.2.8.0"
SIGNATURES = {
    "Boolean_Knob.setValue": "setValue(b)",
    "Boolean_Knob.value": "value()",
    "Channel_Knob.setValue": "setValue(name)",
    "Channel_Knob.value": "value()",
    "Enumeration_Knob.value": "value()",
    "Enumeration_Knob.values": "values()",
    "Gizmo.filename": "filename()",
    "Group.begin": "begin()",
    "Group.end": "end()",
    "Group.node": "node(s)",
    "Group.nodes": "nodes()",
    "Int_Knob.setValue": "setValue(val)",
    "Int_Knob.value": "value()",
    "Knob.Class": "Class()",
    "Knob.clearFlag": "clearFlag(flag)",
    "Knob.getValue": "getValue(channel=)",
    "Knob.label": "label()",
    "Knob.name": "name()",
    "Knob.setEnabled": "setEnabled(enabled)",
    "Knob.setExpression": "setExpression(expression, index=, view=)",
    "Knob.setFlag": "setFlag(flag)",
    "Knob.setLabel": "setLabel(label)",
    "Knob.setName": "setName(name)",
    "Knob.setTooltip": "setTooltip(tooltip)",
    "Knob.setValue": "setValue(val, chan=)",
    "Knob.setVisible": "setVisible(visible)",
    "Knob.toScript": "toScript(quote=, context=)",
    "Knob.value": "value(index=)",
    "Node.Class": "Class()",
    "Node.addKnob": "addKnob(knob)",
    "Node.allKnobs": "allKnobs()",
    "Node.fullName": "fullName()",
    "Node.height": "height()",
    "Node.input": "input(index)",
    "Node.inputs": "inputs()",
    "Node.knob": "knob(p, follow_link=)",
    "Node.knobs": "knobs()",
    "Node.maxInputs": "maxInputs()",
    "Node.name": "name()",
    "Node.parent": "parent()",
    "Node.removeKnob": "removeKnob(knob)",
    "Node.setInput": "setInput(i, node)",
    "Node.setName": "setName(name, uncollide=, updateExpressions=)",
    "Node.width": "width()",
    "Root.firstFrame": "firstFrame()",
    "Root.lastFrame": "lastFrame()",
    "Script_Knob.command": "command()",
    "Script_Knob.execute": "execute()",
    "Script_Knob.setCommand": "setCommand(cmd)",
    "String_Knob.setValue": "setValue(val, view=)",
    "String_Knob.value": "value(oc=)",
    "ask": "ask(prompt)",
    "createNode": "createNode(typ, knobs=, inpanel=)",
    "delete": "delete(n)",
    "execute": "execute(nameOrNode, start, end, incr=, views=, continueOnError=)",
    "executing": "executing(f=)",
    "frame": "frame(f=)",
    "menu": "menu(name)",
    "message": "message(prompt)",
    "pluginAddPath": "pluginAddPath(args, addToSysPath=)",
    "pluginPath": "pluginPath()",
    "root": "root()",
    "sample": "sample(node, channel, x, y, dx=, dy=)",
    "scriptOpen": "scriptOpen(filename=)",
    "scriptReadText": "scriptReadText(s)",
    "thisGroup": "thisGroup()",
    "thisKnob": "thisKnob()",
    "thisNode": "thisNode()",
    "toNode": "toNode(s)",
}
# class -> its base chain in the stubs, nearest first
BASES = {
    "Root": ["Group", "Node"], "Gizmo": ["Group", "Node"], "Group": ["Node"],
    "Int_Knob": ["Array_Knob", "Knob"], "Double_Knob": ["Array_Knob", "Knob"],
    "Boolean_Knob": ["Array_Knob", "Knob"],
    "Enumeration_Knob": ["Unsigned_Knob", "Array_Knob", "Knob"],
    "File_Knob": ["EvalString_Knob", "String_Knob", "Knob"],
    "PyScript_Knob": ["Script_Knob", "String_Knob", "Knob"],
    "Text_Knob": ["Knob"], "Tab_Knob": ["Knob"], "Channel_Knob": ["Knob"],
}
# what the plugin's own code uses; each must exist in the double AND be in the list above
USED_BY_PLUGIN = ["execute", "createNode", "toNode", "thisNode", "thisKnob", "root", "message",
                  "ask", "delete", "frame", "executing", "scriptOpen"]


def shape(func) -> str:
    parts = []
    for p in inspect.signature(func).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_POSITIONAL:
            parts.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            parts.append("**" + p.name)
        else:
            parts.append(p.name + ("=" if p.default is not p.empty else ""))
    return f"{func.__name__}({', '.join(parts)})"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_matches_stub(fake_nuke, name):
    obj = fake_nuke
    for part in name.split("."):
        obj = getattr(obj, part)
    assert shape(obj) == SIGNATURES[name], f"{name} drifted from {STUB_VERSION}"


@pytest.mark.parametrize("cls", sorted(BASES))
def test_class_hierarchy_matches_stub(fake_nuke, cls):
    mro = [c.__name__ for c in getattr(fake_nuke, cls).__mro__[1:] if c is not object]
    assert mro == BASES[cls]


def test_plugin_uses_only_checked_api(fake_nuke):
    for name in USED_BY_PLUGIN:
        assert name in SIGNATURES and callable(getattr(fake_nuke, name))
    for flag in ("GUI", "EXE_PATH", "env", "nodes", "ProgressTask"):
        assert hasattr(fake_nuke, flag)


def test_double_behaves_like_nuke_where_the_plugin_relies_on_it(fake_nuke, tmp_path):
    nuke = fake_nuke
    with pytest.raises(NameError):
        nuke.nodes.Write(no_such_knob=1)  # Nuke rejects unknown knobs
    g = nuke.nodes.Group()
    with g:
        inner = nuke.nodes.NoOp()
    assert inner.parent() is g and nuke.toNode(f"{g.name()}.{inner.name()}") is inner
    w = nuke.nodes.Write(file=str(tmp_path / "x.####.exr"), raw=True)
    code = f"nuke.execute(nuke.toNode({w.name()!r}), 1, 1)"
    w.addKnob(nuke.PyScript_Knob("nested", "nested", code))
    nuke.root()["format"].setValue("8 8 0 0 8 8 1 tiny")
    nuke.execute(w, 1, 1)
    assert (tmp_path / "x.0001.exr").exists()
    nuke._state["executing"] = True  # as inside a render: nesting is refused, as in Nuke
    with pytest.raises(RuntimeError, match="already executing"):
        w["nested"].execute()
    nuke._state["executing"] = False
    e = nuke.Enumeration_Knob("e", "e", ["a", "b"])
    with pytest.raises(ValueError):
        e.setValue("c")
    with pytest.raises(ValueError, match="add_layer"):
        nuke.nodes.Copy()["to0"].setValue("nolayer.alpha")
