"""The ``nuke`` test double cannot drift from Nuke's API: its signatures and class hierarchy
against literal expectations read from the PyPI ``types-nuke`` 13.2.8.0 stubs
(``nuke-stubs/_nuke.pyi``, ``__init__.pyi``; stubs with ``*args, **kwargs`` are not listed:
they constrain nothing). The stub wheel is not downloadable in CI, hence literals."""

from __future__ import annotations

import inspect

import pytest

from nuke_double.fixtures import fake_nuke  # noqa: F401  (a pytest fixture, requested by name)

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
    "Link_Knob.getLink": "getLink()",
    "Link_Knob.getLinkedKnob": "getLinkedKnob()",
    "Link_Knob.makeLink": "makeLink(s, t)",
    "Link_Knob.setLink": "setLink(s)",
    "Link_Knob.setValue": "setValue()",
    "Link_Knob.value": "value()",
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
    "addBeforeRender": "addBeforeRender(call, args=, kwargs=, nodeClass=)",
    "addOnDestroy": "addOnDestroy(call, args=, kwargs=, nodeClass=)",
    "addOnScriptClose": "addOnScriptClose(call, args=, kwargs=, nodeClass=)",
    "addUpdateUI": "addUpdateUI(call, args=, kwargs=, nodeClass=)",
    "ask": "ask(prompt)",
    "createNode": "createNode(typ, knobs=, inpanel=)",
    "delete": "delete(n)",
    "execute": "execute(nameOrNode, start, end, incr=, views=, continueOnError=)",
    "executeInMainThread": "executeInMainThread(call, args=, kwargs=)",
    "executeInMainThreadWithResult": "executeInMainThreadWithResult(call, args=, kwargs=)",
    "executeMultiple": "executeMultiple(nodes, ranges, views, continueOnError=)",
    "executing": "executing(f=)",
    "filename": "filename(node, i=)",
    "frame": "frame(f=)",
    "menu": "menu(name)",
    "message": "message(prompt)",
    "pluginAddPath": "pluginAddPath(args, addToSysPath=)",
    "pluginPath": "pluginPath()",
    "root": "root()",
    "sample": "sample(node, channel, x, y, dx=, dy=)",
    "scriptClose": "scriptClose()",
    "scriptOpen": "scriptOpen(filename=)",
    "scriptReadText": "scriptReadText(s)",
    "tcl": "tcl(cmd, *args)",
    "thisGroup": "thisGroup()",
    "thisKnob": "thisKnob()",
    "thisNode": "thisNode()",
    "toNode": "toNode(s)",
    "views": "views()",
    "warning": "warning(message)",
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
    "Link_Knob": ["Knob"],
}
# what the plugin's own code uses; each must exist in the double AND be in the list above
USED_BY_PLUGIN = ["executeMultiple", "createNode", "toNode", "thisNode", "thisKnob", "root",
                  "message", "ask", "delete", "frame", "executing", "scriptOpen", "filename",
                  "views", "tcl", "executeInMainThread", "executeInMainThreadWithResult",
                  "addUpdateUI", "addOnDestroy", "addOnScriptClose", "warning"]


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
    for flag in ("GUI", "EXE_PATH", "env", "nodes", "ProgressTask", "callbacks", "REPLACE"):
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


def test_double_models_tcl_gui_links_groups_and_executing(fake_nuke, tmp_path, monkeypatch):
    nuke = fake_nuke
    monkeypatch.setenv("SHOW", "/shows/x")
    nuke.root()["name"].setValue("/shows/x/shot_v003.nk")
    g = nuke.nodes.Group()
    with g:
        r = nuke.nodes.Read(file="[file dirname [value root.name]]/$env(SHOW)/"
                                 "[file rootname [file tail [value root.name]]]/"
                                 "[value parent.name].####.exr")
    nuke.frame(7)
    # .value() is the text, .evaluate() expands TCL (and puts in the frame, as Nuke does);
    # nuke.filename keeps the frame placeholder
    assert r["file"].value().startswith("[file dirname")
    assert r["file"].evaluate() == "/shows/x//shows/x/shot_v003/Group1.0007.exr"
    assert nuke.filename(r) == "/shows/x//shows/x/shot_v003/Group1.%04d.exr"
    assert nuke.tcl("subst", "[getenv SHOW]") == "/shows/x"
    # knob expressions with $gui: a Read that errors in renders, black in the GUI
    r["on_error"].fromScript('{"\\$gui ? 1 : 0"}')
    assert r["on_error"].value() == "error"
    nuke.GUI = True
    assert r["on_error"].value() == "black"
    # Link_Knob: value and script text are the linked knob's
    g.addKnob(nuke.Link_Knob("file_link"))
    g["file_link"].setLink(f"{r.name()}.file")
    assert g["file_link"].getLinkedKnob() is r["file"] and g["file_link"].value() == r["file"].value()
    g["file_link"].fromScript("/a/b.####.exr")
    assert r["file"].value() == "/a/b.####.exr"
    # nodes inside groups are found by full name and by recursive listing
    assert nuke.toNode(f"{g.name()}.{r.name()}") is r
    assert r in nuke.allNodes("Read", recurseGroups=True) and r not in nuke.allNodes("Read")
    # executing() is true while a render runs (what a callback during a render sees)
    nuke.root()["format"].setValue("4 4 0 0 4 4 1 tiny")
    seen = []
    w = nuke.nodes.Write(file=str(tmp_path / "x.####.exr"), raw=True)
    nuke.addBeforeRender(lambda: seen.append(nuke.executing()))
    nuke.executeMultiple([w], [(1, 1, 1)], ["main"])
    assert seen == [True] and nuke.executing() is False


@pytest.mark.parametrize("pattern", ["a.####.exr", "a.%04d.exr", "a.#.exr"])
@pytest.mark.parametrize("at", [-12, -1, 0, 7, 1001])
def test_the_engine_names_a_frame_as_nukes_file_knob_does(fake_nuke, pattern, at):
    # the engine reads what Nuke's Writes export and writes what its Read loads: a negative
    # frame's padding counts its sign (-001), as Nuke's %04d does
    from nuke_hdmatt.sequence import FrameSequence
    write = fake_nuke.nodes.Write(file=pattern)
    fake_nuke.frame(at)
    assert fake_nuke.filename(write, fake_nuke.REPLACE) == FrameSequence(pattern).path(at)
