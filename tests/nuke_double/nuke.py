"""Test double of Foundry's ``nuke`` Python module, for the HDMatt plugin tests.

Faithful where the plugin depends on it, absent elsewhere (an attribute the double lacks is
an AttributeError, never a silent no-op):

* nodes and knobs with the real class names and signatures (checked against the PyPI
  ``types-nuke`` 13.2.8.0 stubs: see ``tests/test_nuke_double.py``); unknown knob names are
  errors, as in Nuke;
* scripts and gizmos are loaded from the real text format (``nuke_hdmatt.nuke.nk_script``):
  ``createNode("HDMatt")`` reads ``HDMatt.gizmo`` from the plugin path, ``scriptOpen`` reads
  ``.nk`` files; ``onCreate`` and button knobs run their Python with ``thisNode()`` set;
* images: Read reads real files through OpenImageIO (cached until its ``reload`` knob runs,
  like Nuke; ``on_error black`` gives black for a missing frame), Copy/Input/Output/Group pass
  channels, ``execute(write, first, last)`` writes real EXRs through OpenImageIO and refuses
  to nest (Nuke: "I'm already executing something else");
* ``ProgressTask``, ``message``/``ask`` (recorded in ``_messages``), ``GUI``, ``env``.

Colour conversions are not modelled: a Write must be ``raw``.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import OpenImageIO as oiio

from nuke_hdmatt.nuke import nk_script

GUI = False
EXE_PATH = "/opt/Nuke13.2v8/Nuke13.2"
NUKE_VERSION_MAJOR, NUKE_VERSION_MINOR, NUKE_VERSION_RELEASE = 13, 2, 8
NUKE_VERSION_STRING = "13.2v8"
STARTLINE, INVISIBLE, NO_ANIMATION = 0x1000, 0x400, 0x100
env = {"gui": False, "NukeVersionMajor": 13, "NukeVersionMinor": 2, "ExecutablePath": EXE_PATH}

# test hooks: not part of Nuke's API
_messages: list[str] = []
_answers: list[bool] = []
_plugin_paths: list[str] = []
_layers: dict[str, list[str]] = {"rgba": ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]}


class CancelledError(Exception):
    pass


# ---------------------------------------------------------------- knobs


class Knob:
    def __init__(self, name, label=None, *args, **kwargs):
        self._name = name
        self._label = name if label is None else label
        self._value = self._coerce(args[0]) if args else self._default()
        self._expr = None
        self._node = None
        self._flags = 0
        self._tooltip = ""
        self._visible = True
        self._enabled = True

    def _default(self):
        return ""

    def _coerce(self, v):
        return v

    def Class(self) -> str:
        return type(self).__name__

    def name(self) -> str:
        return self._name

    def label(self) -> str:
        return self._label

    def setLabel(self, label: str) -> None:
        self._label = label

    def setName(self, name: str) -> None:
        self._name = name

    def node(self):
        return self._node

    def setFlag(self, flag: int) -> None:
        self._flags |= flag

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~flag

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & flag)

    def setTooltip(self, tooltip: str) -> None:
        self._tooltip = tooltip

    def tooltip(self) -> str:
        return self._tooltip

    def setVisible(self, visible: bool) -> None:
        self._visible = visible

    def setEnabled(self, enabled: bool) -> None:
        self._enabled = enabled

    def value(self, index=0):
        if self._expr is not None:
            return self._coerce(_reference(self._node, self._expr))
        return self._value

    def getValue(self, channel=0):
        return self.value()

    def setValue(self, val, chan=0) -> bool:
        self._expr = None
        self._value = self._coerce(val)
        return True

    def setExpression(self, expression: str, index=0, view=None) -> bool:
        self._expr = expression
        return True

    def hasExpression(self, index=-1) -> bool:
        return self._expr is not None

    def fromScript(self, text: str) -> None:
        """Script-load path: ``{expr}`` values become expressions."""
        if text.startswith("{") and text.endswith("}"):
            self._expr = text[1:-1].strip()
        else:
            self.setValue(text)

    def toScript(self, quote=False, context=None) -> str:
        return "{%s}" % self._expr if self._expr is not None else str(self._value)


class Array_Knob(Knob):
    pass


class Int_Knob(Array_Knob):
    def _default(self):
        return 0

    def _coerce(self, v):
        return int(float(v))

    def setValue(self, val) -> bool:
        return Knob.setValue(self, val)

    def value(self) -> int:
        return Knob.value(self)


class Double_Knob(Array_Knob):
    def _default(self):
        return 0.0

    def _coerce(self, v):
        return float(v)


class Boolean_Knob(Array_Knob):
    def _default(self):
        return False

    def _coerce(self, v):
        return v.lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)

    def setValue(self, b) -> bool:
        return Knob.setValue(self, b)

    def value(self) -> bool:
        return Knob.value(self)


class String_Knob(Knob):
    def _coerce(self, v):
        return str(v)

    def setValue(self, val, view="default") -> None:
        Knob.setValue(self, val)

    def value(self, oc=None) -> str:
        return Knob.value(self)


class EvalString_Knob(String_Knob):
    def evaluate(self, *args, **kwargs):
        """The value with ``[value ...]`` TCL references replaced (what Nuke's TCL does)."""
        return re.sub(r"\[value ([^\]]+)\]", lambda m: str(_reference(self._node, m.group(1))),
                      self.value())


class File_Knob(EvalString_Knob):
    def fromUserText(self, text):
        self.setValue(text)


class Text_Knob(Knob):
    def __init__(self, name, label=None, text="", *args, **kwargs):
        Knob.__init__(self, name, label)
        self._value = str(text)


class Tab_Knob(Knob):
    pass


class Channel_Knob(Knob):
    def setValue(self, name) -> None:
        if name not in _all_channels() and name != "none":
            raise ValueError(f"{self._name}: unknown channel {name!r} (missing add_layer?)")
        Knob.setValue(self, name)

    def value(self) -> str:
        return Knob.value(self)


class Unsigned_Knob(Array_Knob):
    pass


class Enumeration_Knob(Unsigned_Knob):
    def __init__(self, name, label=None, values=(), *args, **kwargs):
        Knob.__init__(self, name, label)
        self._values = [str(v) for v in values]
        self._value = self._values[0] if self._values else ""

    def values(self):
        return list(self._values)

    def setValue(self, *args, **kwargs):
        v = args[0]
        if isinstance(v, int) and not isinstance(v, bool):
            v = self._values[v]
        if str(v) not in self._values:
            raise ValueError(f"{self._name}: {v!r} is not one of {self._values}")
        self._value = str(v)
        return True

    def value(self):
        return self._value

    def getValue(self, *args, **kwargs):
        return float(self._values.index(self._value))


class Script_Knob(String_Knob):
    def __init__(self, name, label=None, command="", *args, **kwargs):
        String_Knob.__init__(self, name, label)
        self._value = command

    def command(self) -> str:
        return self._value

    def setCommand(self, cmd) -> None:
        self._value = cmd

    def execute(self) -> None:
        _run_python(self._value, self._node, self)


class PyScript_Knob(Script_Knob):
    pass


class _ReloadKnob(Script_Knob):
    """Read's ``reload`` button: drops the Read's cached images (a Script_Knob in Nuke)."""

    def execute(self) -> None:
        self._node._cache.clear()
        self._node.reloads += 1


_KNOB_TYPES = {1: String_Knob, 2: File_Knob, 3: Int_Knob, 4: Enumeration_Knob, 6: Boolean_Knob,
               7: Double_Knob, 20: Tab_Knob, 22: PyScript_Knob, 26: Text_Knob}


def _reference(node, ref: str):
    """``root.knob`` / ``parent.knob`` / ``this.knob`` / ``Node.knob`` as seen from ``node``."""
    head, _, knob = ref.strip().rpartition(".")
    if head == "root":
        target = root()
    elif head == "parent":
        target = node._parent
    elif head in ("this", ""):
        target = node
    else:
        target = toNode(head)
    if target is None or target.knob(knob) is None:
        raise NameError(f"{ref}: no such knob")
    return target[knob].value()


# ---------------------------------------------------------------- images


def _all_channels():
    return [c for chans in _layers.values() for c in chans]


def _format_size():
    parts = str(root()["format"].value()).split()
    return int(parts[0]), int(parts[1])


def _black(channels=("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")):
    w, h = _format_size()
    return {c: np.zeros((h, w), np.float32) for c in channels}


_SHORT = {"red": "R", "green": "G", "blue": "B", "alpha": "A"}
_LONG = {v: k for k, v in _SHORT.items()}


def _from_file_channel(name: str) -> str:
    layer, _, chan = name.rpartition(".")
    layer = layer or "rgba"
    return f"{layer}.{_LONG.get(chan, chan)}"


def _to_file_channel(name: str) -> str:
    layer, _, chan = name.rpartition(".")
    chan = _SHORT.get(chan, chan)
    return chan if layer == "rgba" else f"{layer}.{chan}"


def _frame_path(pattern: str, frame: int) -> str:
    def hashes(m):
        return "%0*d" % (len(m.group(0)), frame)
    path = re.sub(r"#+", hashes, pattern)
    return re.sub(r"%0?(\d*)d", lambda m: "%0*d" % (int(m.group(1) or 0), frame), path)


# ---------------------------------------------------------------- nodes

_COMMON = {"name": String_Knob, "xpos": Int_Knob, "ypos": Int_Knob, "label": String_Knob,
           "disable": Boolean_Knob, "selected": Boolean_Knob, "tile_color": String_Knob,
           "help": String_Knob, "onCreate": String_Knob, "knobChanged": String_Knob,
           "hide_input": Boolean_Knob, "note_font": String_Knob}


class Node:
    _KNOBS: dict = {}
    _DEFAULT_INPUTS = 1
    _MAX_INPUTS = 1

    def __init__(self, *args, **kwargs):
        self._class = type(self).__name__
        self._knobs: dict[str, Knob] = {}
        self._inputs: list = []
        self._parent = None
        for name, cls in {**_COMMON, **self._KNOBS}.items():
            self.addKnob(cls(name))

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return self._knobs["name"].value()

    def setName(self, name: str, uncollide=True, updateExpressions=False) -> None:
        self._knobs["name"].setValue(name)

    def fullName(self) -> str:
        if self._parent is None or isinstance(self._parent, Root):
            return self.name()
        return f"{self._parent.fullName()}.{self.name()}"

    def parent(self):
        return self._parent

    def knob(self, p, follow_link=False):
        if isinstance(p, int):
            return list(self._knobs.values())[p]
        return self._knobs.get(p)

    def knobs(self):
        return dict(self._knobs)

    def allKnobs(self):
        return list(self._knobs.values())

    def addKnob(self, knob: Knob) -> None:
        knob._node = self
        self._knobs[knob.name()] = knob

    def removeKnob(self, knob: Knob) -> None:
        del self._knobs[knob.name()]

    def __getitem__(self, name: str) -> Knob:
        k = self._knobs.get(name)
        if k is None:
            raise NameError(f"knob {name} does not exist")
        return k

    def input(self, index: int):
        return self._inputs[index] if index < len(self._inputs) else None

    def inputs(self) -> int:
        return len(self._inputs)

    def maxInputs(self) -> int:
        return self._MAX_INPUTS

    def setInput(self, i: int, node) -> bool:
        if i >= self.maxInputs():
            return False
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        while self._inputs and self._inputs[-1] is None:
            self._inputs.pop()
        return True

    def width(self) -> int:
        return _format_size()[0]

    def height(self) -> int:
        return _format_size()[1]

    def _image(self, frame: int) -> dict:
        src = self.input(0)
        return dict(src._image(frame)) if src is not None else _black()


class Group(Node):
    _MAX_INPUTS = 99

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self._nodes: list[Node] = []

    def nodes(self):
        return list(self._nodes)

    def node(self, s: str):
        return next((n for n in self._nodes if n.name() == s), None)

    def begin(self):
        _group_stack.append(self)
        return self

    def end(self) -> None:
        _group_stack.pop()

    def __enter__(self):
        return self.begin()

    def __exit__(self, *exc):
        self.end()

    def _image(self, frame):
        out = next((n for n in self._nodes if n.Class() == "Output"), None)
        if out is None:
            raise RuntimeError(f"{self.name()}: group has no Output node")
        return out._image(frame)


class Root(Group):
    _KNOBS = {"first_frame": Int_Knob, "last_frame": Int_Knob, "format": String_Knob,
              "fps": Double_Knob, "colorManagement": String_Knob, "OCIO_config": String_Knob,
              "customOCIOConfigPath": File_Knob, "workingSpaceLUT": String_Knob,
              "project_directory": String_Knob}
    _MAX_INPUTS = 0

    def __init__(self):
        Group.__init__(self)
        self["first_frame"].setValue(1)
        self["last_frame"].setValue(100)
        self["format"].setValue("2048 1556 0 0 2048 1556 1 2K_Super_35(full-ap)")
        self["colorManagement"].setValue("Nuke")
        self["OCIO_config"].setValue("nuke-default")
        self["workingSpaceLUT"].setValue("linear")

    def name(self) -> str:
        return self["name"].value() or "Root"

    def firstFrame(self) -> int:
        return self["first_frame"].value()

    def lastFrame(self) -> int:
        return self["last_frame"].value()


class Gizmo(Group):
    def filename(self) -> str:
        return getattr(self, "_filename", "")


class Input(Node):
    _KNOBS = {"number": Int_Knob}
    _DEFAULT_INPUTS = 0
    _MAX_INPUTS = 0

    def _image(self, frame):
        src = self._parent.input(self["number"].value())
        return dict(src._image(frame)) if src is not None else _black()


class Output(Node):
    pass


class Dot(Node):
    pass


class NoOp(Node):
    pass


class Copy(Node):
    _KNOBS = {"from0": Channel_Knob, "to0": Channel_Knob, "bbox": String_Knob}
    _MAX_INPUTS = 2

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self["from0"].setValue("rgba.alpha")
        self["to0"].setValue("rgba.alpha")
        self["bbox"].setValue("union")

    def _image(self, frame):
        b = Node._image(self, frame)
        a_node = self.input(1)
        if a_node is None:
            return b
        a = a_node._image(frame)
        src = a.get(self["from0"].value())
        shape = next(iter(b.values())).shape
        if src is None:
            src = np.zeros(shape, np.float32)
        if src.shape != shape:
            raise RuntimeError(f"{self.name()}: A is {src.shape[::-1]}, B is {shape[::-1]}")
        b[self["to0"].value()] = src
        return b


class Read(Node):
    _KNOBS = {"file": File_Knob, "first": Int_Knob, "last": Int_Knob, "before": String_Knob,
              "after": String_Knob, "on_error": String_Knob, "raw": Boolean_Knob,
              "colorspace": String_Knob, "format": String_Knob}
    _DEFAULT_INPUTS = 0
    _MAX_INPUTS = 0

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self.addKnob(_ReloadKnob("reload"))
        self["first"].setValue(1)
        self["last"].setValue(1)
        self["before"].setValue("hold")
        self["after"].setValue("hold")
        self["on_error"].setValue("error")
        self._cache: dict[str, dict] = {}
        self.reads = 0  # test hooks: files actually read, reload button presses
        self.reloads = 0

    def _image(self, frame):
        first, last = self["first"].value(), self["last"].value()
        if frame < first or frame > last:
            mode = self["before" if frame < first else "after"].value()
            if mode == "black":
                return _black()
            frame = min(max(frame, first), last)
        path = _frame_path(self["file"].evaluate(), frame)
        if path not in self._cache:
            if not os.path.isfile(path):
                if self["on_error"].value() == "black":
                    return _black()
                raise RuntimeError(f"{self.name()}: Read error: {path}: No such file or directory")
            inp = oiio.ImageInput.open(path)
            if inp is None:
                raise RuntimeError(f"{self.name()}: Read error: {path}: {oiio.geterror()}")
            spec = inp.spec()
            pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
            inp.close()
            self.reads += 1
            self._cache[path] = {_from_file_channel(n): np.ascontiguousarray(pixels[..., i])
                                 for i, n in enumerate(spec.channelnames)}
        return dict(self._cache[path])


class Write(Node):
    _KNOBS = {"file": File_Knob, "file_type": String_Knob, "datatype": String_Knob,
              "channels": String_Knob, "raw": Boolean_Knob, "colorspace": String_Knob,
              "compression": String_Knob, "create_directories": Boolean_Knob,
              "first": Int_Knob, "last": Int_Knob, "use_limit": Boolean_Knob}

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self["channels"].setValue("rgb")
        self["datatype"].setValue("16 bit half")
        self["file_type"].setValue("exr")

    def _channels(self, img):
        want = self["channels"].value()
        if want == "all":
            return sorted(img)
        if want == "rgb":
            return _layers["rgba"][:3]
        if want in ("rgba", "alpha"):
            return _layers["rgba"] if want == "rgba" else ["rgba.alpha"]
        if want in _layers:
            return _layers[want]
        raise RuntimeError(f"{self.name()}: unknown channels {want!r}")

    def _write(self, frame: int) -> str:
        if not self["raw"].value():
            raise NotImplementedError("nuke double: Write colour conversion is not modelled; "
                                      "use raw")
        if self["file_type"].value() != "exr":
            raise NotImplementedError("nuke double: Write writes exr only")
        img = Node._image(self, frame)
        names = self._channels(img)
        shape = next(iter(img.values())).shape
        data = np.stack([img.get(c, np.zeros(shape, np.float32)) for c in names], axis=-1)
        path = _frame_path(self["file"].evaluate(), frame)
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            if not self["create_directories"].value():
                raise RuntimeError(f"{self.name()}: Can't write {path}: No such file or directory")
            os.makedirs(folder)
        fmt = oiio.FLOAT if self["datatype"].value() == "32 bit float" else oiio.HALF
        spec = oiio.ImageSpec(shape[1], shape[0], len(names), fmt)
        spec.channelnames = tuple(_to_file_channel(c) for c in names)
        tmp = f"{path}.tmp{os.getpid()}.exr"  # Nuke renders to a temp file, then renames
        out = oiio.ImageOutput.create(tmp)
        if out is None or not out.open(tmp, spec):
            raise RuntimeError(f"{self.name()}: Can't write {path}: {oiio.geterror()}")
        out.write_image(data)
        out.close()
        os.replace(tmp, path)
        return path


_CLASSES = {c.__name__: c for c in (Node, Group, Input, Output, Dot, NoOp, Copy, Read, Write)}
_root = Root()
_group_stack: list = []
_this: list = []
_state = {"frame": 1, "executing": False}


# ---------------------------------------------------------------- module functions


def root():
    return _root


def thisNode():
    return _this[-1][0] if _this else _root


def thisKnob():
    return _this[-1][1] if _this else None


def thisGroup():
    return _current_group()


def _current_group():
    return _group_stack[-1] if _group_stack else _root


def _run_python(code: str, node, knob=None) -> None:
    if not code:
        return
    _this.append((node, knob))
    try:
        exec(code, {"nuke": sys.modules[__name__], "__name__": "__nuke_knob__"})
    finally:
        _this.pop()


def _fire_knob_changed(node, knob_name: str) -> None:
    """Test hook: what Nuke does when the user edits a knob in the panel."""
    _run_python(node["knobChanged"].value(), node, node[knob_name])


def _new_node(cls_name: str, group=None):
    group = group if group is not None else _current_group()
    if cls_name in _CLASSES:
        node = _CLASSES[cls_name]()
        base = cls_name
    else:
        node = _load_gizmo(cls_name)
        base = cls_name
    node._parent = group
    taken = {n.name() for n in group._nodes}
    i = 1
    while f"{base}{i}" in taken:
        i += 1
    node["name"].setValue(f"{base}{i}")
    group._nodes.append(node)
    return node


def _apply_knob(node, name: str, value) -> None:
    k = node.knob(name)
    if k is None:
        raise NameError(f"{node.Class()}: no knob named {name!r}")
    if isinstance(value, str):
        k.fromScript(value)
    else:
        k.setValue(value)


def createNode(typ: str, knobs: str = "", inpanel: bool = True):
    node = _new_node(typ)
    toks = nk_script.tokens(knobs)
    for i in range(0, len(toks) - 1, 2):
        _apply_knob(node, toks[i].text, toks[i + 1].text)
    _run_python(node["onCreate"].value(), node)
    return node


class _Nodes:
    def __getattr__(self, cls_name):
        def make(**knobs):
            node = _new_node(cls_name)
            for name, value in knobs.items():
                _apply_knob(node, name, value)
            _run_python(node["onCreate"].value(), node)
            return node
        return make


nodes = _Nodes()


def delete(n) -> None:
    n._parent._nodes.remove(n)
    for other in allNodes(recurseGroups=True):
        other._inputs = [None if x is n else x for x in other._inputs]


def allNodes(filter=None, group=None, recurseGroups=False):
    group = group if group is not None else _current_group()
    out = []
    for n in group._nodes:
        if filter is None or n.Class() == filter:
            out.append(n)
        if recurseGroups and hasattr(n, "_nodes"):
            out.extend(allNodes(filter, n, True))
    return out


def toNode(s: str):
    for start in (_current_group(), _root):
        node = start
        for part in s.split("."):
            node = next((n for n in getattr(node, "_nodes", []) if n.name() == part), None)
            if node is None:
                break
        if node is not None:
            return node
    return None


def frame(f=None) -> int:
    if f is not None:
        _state["frame"] = int(f)
    return _state["frame"]


def executing(f=None) -> bool:
    return _state["executing"]


def execute(nameOrNode, start, end, incr=1, views=None, continueOnError=False) -> None:
    node = toNode(nameOrNode) if isinstance(nameOrNode, str) else nameOrNode
    if node is None or not isinstance(node, Write):
        raise RuntimeError(f"{nameOrNode}: cannot execute (not a Write)")
    if _state["executing"]:
        raise RuntimeError("I'm already executing something else")
    _state["executing"] = True
    try:
        for f in range(int(start), int(end) + 1, int(incr)):
            frame(f)
            node._write(f)
    finally:
        _state["executing"] = False


render = execute


def sample(node, channel: str, x, y, dx=1, dy=1) -> float:
    img = node._image(frame())
    plane = img[channel]
    # Nuke's y axis points up, files are stored top row first
    return float(plane[plane.shape[0] - 1 - int(y), int(x)])


class ProgressTask:
    """Records what the plugin reports; ``cancel_when(task)`` (class hook) decides isCancelled."""

    cancel_when = None
    tasks: list = []

    def __init__(self, *args, **kwargs):
        self.title = args[0] if args else ""
        self.messages: list[str] = []
        self.progress: list[int] = []
        ProgressTask.tasks.append(self)

    def setMessage(self, *args, **kwargs):
        self.messages.append(args[0])

    def setProgress(self, *args, **kwargs):
        self.progress.append(int(args[0]))

    def isCancelled(self, *args, **kwargs):
        hook = ProgressTask.cancel_when
        return bool(hook and hook(self))


def message(prompt: str) -> None:
    _messages.append(prompt)
    if not GUI:
        print(prompt)


def ask(prompt: str) -> bool:
    _messages.append(prompt)
    return _answers.pop(0) if _answers else True


def pluginAddPath(args, addToSysPath=True) -> None:
    for p in [args] if isinstance(args, str) else args:
        _plugin_paths.insert(0, p)
        if addToSysPath and p not in sys.path:
            sys.path.insert(0, p)


def pluginPath():
    extra = [p for p in os.environ.get("NUKE_PATH", "").split(os.pathsep) if p]
    return _plugin_paths + extra


class _MenuItem:
    def __init__(self, name):
        self._name = name
        self.items = {}
        self.command = None

    def name(self) -> str:
        return self._name

    def addMenu(self, *args, **kwargs):
        return self.items.setdefault(args[0], _MenuItem(args[0]))

    def addCommand(self, *args, **kwargs):
        item = self.items.setdefault(args[0], _MenuItem(args[0]))
        item.command = args[1] if len(args) > 1 else kwargs.get("command")
        return item

    def findItem(self, name):
        return self.items.get(name)


_menus: dict = {}


def menu(name: str):
    return _menus.setdefault(name, _MenuItem(name))


def _load_gizmo(cls_name: str):
    for folder in pluginPath():
        path = os.path.join(folder, cls_name + ".gizmo")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            gizmo = _build(nk_script.parse(text), definition=cls_name)
            gizmo._filename = path
            return gizmo
    raise RuntimeError(f"{cls_name}: unknown command (no {cls_name}.gizmo on the plugin path)")


def _add_user_knob(node, uk) -> None:
    cls = _KNOB_TYPES.get(uk.kind)
    if cls is None:
        raise NotImplementedError(f"nuke double: addUserKnob type {uk.kind}")
    if cls is Enumeration_Knob:
        knob = cls(uk.name, uk.label or None, uk.values)
    elif cls in (PyScript_Knob, Text_Knob):
        knob = cls(uk.name, uk.label or None, uk.text)
    else:
        knob = cls(uk.name, uk.label or None)
    knob.setTooltip(uk.tooltip)
    if "+INVISIBLE" in uk.flags:
        knob.setVisible(False)
    node.addKnob(knob)


def _build(statements, definition=None):
    """Create nodes from parsed statements in the current group.

    ``definition``: loading ``<definition>.gizmo``: its ``Gizmo`` block becomes the returned
    node (class ``definition``) and the following nodes its children.
    """
    stack, saved, created, groups, gizmo = [], {}, [], [], None
    for st in statements:
        if st.kind == "add_layer":
            chans = nk_script.tokens(st.arg)
            _layers[chans[0].text] = [c.text for c in chans[1:]]
        elif st.kind == "push":
            stack.append(None if st.arg == "0" else saved[st.arg.lstrip("$")])
        elif st.kind == "set":
            saved[st.arg] = stack[-1]
        elif st.kind == "end_group":
            group = groups.pop()
            group.end()
            stack.append(group)
        elif st.kind == "node":
            blk = st.block
            if blk.cls == "Root":
                for name, value in blk.knobs.items():
                    if name != "inputs":
                        _apply_knob(_root, name, value)
                continue
            if blk.cls == "Gizmo" and definition:
                node = gizmo = Gizmo()
                node._class = definition
                node._parent = _current_group()
                n_in = 0
            else:
                node = _new_node(blk.cls)
                n_in = blk.inputs(node._DEFAULT_INPUTS)
            for kind, item in blk.order:
                if kind == "user":
                    _add_user_knob(node, item)
                elif item != "inputs":
                    _apply_knob(node, item, blk.knobs[item])
            for i in range(n_in):
                node.setInput(i, stack.pop() if stack else None)
            # a saved gizmo instance (``HDMatt {...}``) is one block; Group blocks (and the
            # Gizmo block of a definition) are followed by their children and end_group
            if blk.cls == "Group" or node is gizmo:
                node.begin()
                groups.append(node)
            else:
                stack.append(node)
            created.append(node)
    if definition:
        return gizmo
    for node in created:
        _run_python(node["onCreate"].value(), node)
    return created


def scriptClear(*args, **kwargs) -> None:
    global _root
    _root = Root()
    _group_stack.clear()
    _layers.clear()
    _layers["rgba"] = ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]


def scriptOpen(filename=None) -> None:
    scriptClear()
    with open(filename, encoding="utf-8") as f:
        statements = nk_script.parse(f.read())
    _root["name"].setValue(os.path.abspath(filename))
    _build(statements)


def scriptReadText(s: str) -> None:
    _build(nk_script.parse(s))
