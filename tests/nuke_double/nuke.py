"""Test double of Foundry's ``nuke`` Python module, for the HDMatt plugin tests.

Faithful where the plugin depends on it, absent elsewhere (an attribute the double lacks is
an AttributeError, never a silent no-op):

* nodes and knobs with the real class names and signatures (checked against the PyPI
  ``types-nuke`` 13.2.8.0 stubs: see ``tests/test_nuke_double.py``); unknown knob names are
  errors, as in Nuke;
* threads: Nuke's API belongs to the main thread. Every node, knob and module call from
  another thread raises RuntimeError, except ``executeInMainThread`` (queued for the main
  thread) and ``executeInMainThreadWithResult`` (blocks until the main thread ran it) and
  ``ProgressTask``, which Nuke lets worker threads drive. The main thread's event loop is
  the test hook ``_process_events``: a test that waits for a worker without it deadlocks, as
  a Nuke whose main thread is busy would;
* scripts and gizmos are loaded from the real text format (``nuke_hdmatt.nuke.nk_script``):
  ``createNode("HDMatt")`` reads ``HDMatt.gizmo`` from the plugin path, ``scriptOpen`` reads
  ``.nk`` files; ``onCreate`` and button knobs run their Python with ``thisNode()`` set (an
  exception in a callback is printed, as Nuke does, and the script loads on);
* TCL: ``EvalString_Knob.evaluate()`` and ``tcl("subst", ...)`` expand ``[value K]``,
  ``[file dirname|tail|rootname|join ...]``, ``[getenv V]``, ``$env(V)`` and ``$gui``;
  ``.value()`` returns the text unexpanded. Knob expressions (``{{...}}``) take knob
  references, numbers, ``$gui`` and ``c ? a : b``;
* ``Link_Knob`` (type 41) forwards value and script text to the knob it links to;
* images with a bbox: Read reads real files through OpenImageIO (its bbox is the file's data
  window; cached until its ``reload`` knob runs, like Nuke; ``on_error black`` gives black
  for a missing frame), Crop shrinks the bbox, CopyBBox takes input A's bbox (the area it
  gains repeats the edge pixels, as Nuke reads outside a bbox; BlackOutside's border makes
  that black), Copy follows
  its ``bbox`` knob, Input/Output/Group pass through; ``execute`` and ``executeMultiple``
  write real EXRs (data window = the input's bbox, display window = the format), refuse to
  nest (Nuke: "I'm already executing something else") and are recorded in ``_renders``;
  in each view of ``views`` a Read's ``%V`` is that view (outside a render: the first view);
* ``GUI`` and ``$gui`` (False: terminal mode, ``nuke -t`` / ``-x``), ``executing()``,
  ``views()``, ``ProgressTask``, ``message``/``ask`` (recorded in ``_messages``),
  ``warning`` (the error console: ``_console``), ``env``,
  ``addUpdateUI`` (run by the test hook ``_update_ui``), ``addOnDestroy`` (run by ``delete``),
  ``addOnScriptClose`` (run by ``scriptClose``).

Colour conversions are not modelled: a Write must be ``raw`` or write in the working space
(then its EXR is tagged ``oiio:ColorSpace`` with that space).
"""

from __future__ import annotations

import functools
import os
import queue
import re
import sys
import threading
import traceback

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
_console: list[str] = []  # nuke.warning's messages
_answers: list[bool] = []
_plugin_paths: list[str] = []
_layers: dict[str, list[str]] = {"rgba": ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]}
_renders: list[dict] = []  # each execute/executeMultiple: {"writes": [names], "ranges": [...]}
_MAIN = threading.main_thread()
_main_queue: "queue.Queue" = queue.Queue()
MAIN_THREAD_WAIT_S = 30.0  # executeInMainThreadWithResult: a test whose main thread never
# processes events fails after this instead of hanging (Nuke would hang)


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

    def enabled(self) -> bool:
        return self._enabled

    def value(self, index=0):
        if self._expr is not None:
            return self._coerce(_expression(self._node, self._expr))
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
        """The value with its TCL expanded (see the module docstring for what is modelled)."""
        return _tcl_subst(self.value(), self._node)


class File_Knob(EvalString_Knob):
    def evaluate(self, *args, **kwargs):
        """TCL expanded and, as in Nuke, the current frame put into ``####`` / ``%04d``
        (``nuke.filename(node)`` keeps the placeholders)."""
        return _frame_path(EvalString_Knob.evaluate(self), frame())

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

    def fromScript(self, text: str) -> None:
        if text.startswith("{") and text.endswith("}"):
            self._expr = text[1:-1].strip()  # an expression giving the entry's index
        else:
            self.setValue(text)

    def values(self):
        return list(self._values)

    def setValue(self, *args, **kwargs):
        v = args[0]
        if isinstance(v, int) and not isinstance(v, bool):
            v = self._values[v]
        if str(v) not in self._values:
            raise ValueError(f"{self._name}: {v!r} is not one of {self._values}")
        self._expr = None
        self._value = str(v)
        return True

    def value(self):
        if self._expr is not None:
            return self._values[int(_expression(self._node, self._expr))]
        return self._value

    def getValue(self, *args, **kwargs):
        return float(self._values.index(self.value()))


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


class Link_Knob(Knob):
    """Type 41: shows, saves and sets the knob it links to (``node.knob`` inside a group is
    looked up among the group's children first)."""

    def __init__(self, name, label=None, *args, **kwargs):
        Knob.__init__(self, name, label)
        self._link = ""

    def getLink(self):
        return self._link

    def setLink(self, s) -> None:
        self._link = s

    def makeLink(self, s, t) -> None:
        self._link = f"{s}.{t}"

    def getLinkedKnob(self):
        node_name, _, knob = self._link.rpartition(".")
        owner = self._node
        target = None
        if isinstance(owner, Group):
            target = owner.node(node_name)
        if target is None:
            target = toNode(node_name)
        if target is None or target.knob(knob) is None:
            raise NameError(f"{self._name}: link {self._link!r} goes nowhere")
        return target[knob]

    def setValue(self) -> None:  # as the stub has it: set through getLinkedKnob()
        raise TypeError("Link_Knob.setValue takes no value; use getLinkedKnob().setValue")

    def value(self) -> str:
        return self.getLinkedKnob().value()

    def fromScript(self, text: str) -> None:
        self.getLinkedKnob().fromScript(text)

    def toScript(self, quote=False, context=None) -> str:
        return self.getLinkedKnob().toScript()


class _ReloadKnob(Script_Knob):
    """Read's ``reload`` button: drops the Read's cached images (a Script_Knob in Nuke)."""

    def execute(self) -> None:
        self._node._cache.clear()
        self._node.reloads += 1


_KNOB_TYPES = {1: String_Knob, 2: File_Knob, 3: Int_Knob, 4: Enumeration_Knob, 6: Boolean_Knob,
               7: Double_Knob, 20: Tab_Knob, 22: PyScript_Knob, 26: Text_Knob, 41: Link_Knob}


def _reference(node, ref: str, numeric: bool = False):
    """``root.knob`` / ``parent.knob`` / ``this.knob`` / ``Node.knob`` / ``knob`` seen from
    ``node``: the knob's value (unexpanded text for string knobs, as TCL ``value`` gives).
    ``numeric``: as a knob expression sees it, where a pulldown is its entry's index."""
    head, _, knob = ref.strip().rpartition(".")
    if head == "root":
        target = root()
    elif head == "parent":
        target = node._parent
    elif head in ("this", ""):
        target = node
    else:
        target = None
        group = node._parent if node is not None else None
        if group is not None and not isinstance(group, Root):
            target = group.node(head)
        target = target or toNode(head)
    if target is None or target.knob(knob) is None:
        raise NameError(f"{ref}: no such knob")
    if numeric and isinstance(target[knob], Enumeration_Knob):
        return target[knob].getValue()
    return target[knob].value()


_EXPR_REF = re.compile(r"(?<![\w.$])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def _expression(node, expr: str):
    """A knob expression: TCL substitution (``[value K]``, ``$gui``), then numbers, knob
    references, arithmetic and ``c ? a : b``."""
    text = expr.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    text = text.replace("\\$", "$").replace("\\[", "[").replace("\\]", "]")
    text = _tcl_subst(text, node)  # [value ...] and $gui first, as Nuke does
    text = _EXPR_REF.sub(lambda m: repr(_reference(node, m.group(1), numeric=True)), text)
    if "?" in text:
        cond, _, rest = text.partition("?")
        a, _, b = rest.partition(":")
        text = f"(({a}) if ({cond}) else ({b}))"
    return eval(text, {"__builtins__": {}, "GUI": GUI})


# ---------------------------------------------------------------- TCL (the subset modelled)


def _tcl_words(text: str) -> list[tuple[str, bool]]:
    """Split a TCL command into (word, braced) pairs; brackets nest inside words."""
    words, i, n = [], 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            words.append((text[i + 1:j - 1], True))
            i = j
            continue
        quoted = text[i] == '"'
        j = i + 1 if quoted else i
        depth, start = 0, j
        while j < n:
            c = text[j]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif depth == 0 and (c == '"' if quoted else c.isspace()):
                break
            j += 1
        words.append((text[start:j], False))
        i = j + 1 if quoted else j
    return words


def _tcl_command(words: list[str], node) -> str:
    cmd, args = words[0], words[1:]
    if cmd == "value":
        v = _reference(node, args[0])
        return ("1" if v else "0") if isinstance(v, bool) else str(v)
    if cmd == "getenv":
        return os.environ.get(args[0], "")
    if cmd == "file" and args:
        sub, rest = args[0], args[1:]
        if sub == "dirname":
            return os.path.dirname(rest[0]) or "."
        if sub == "tail":
            return os.path.basename(rest[0])
        if sub == "rootname":
            return os.path.splitext(rest[0])[0]
        if sub == "join":
            return "/".join(rest)
    if cmd == "return":
        return args[0] if args else ""
    raise RuntimeError(f"TCL: invalid command name \"{cmd}\" (not modelled by the nuke double)")


def _tcl_subst(text: str, node) -> str:
    """Command (``[...]``) and variable (``$env(V)``, ``$gui``) substitution."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif c == "[":
            depth, j = 1, i + 1
            while j < n and depth:
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise RuntimeError(f"TCL: missing close-bracket in {text!r}")
            words = [w if braced else _tcl_subst(w, node)
                     for w, braced in _tcl_words(text[i + 1:j - 1])]
            out.append(_tcl_command(words, node))
            i = j
        elif c == "$":
            m = re.match(r"\$env\(([^)]+)\)|\$gui\b", text[i:])
            if m is None:
                raise RuntimeError(f"TCL: can't read variable in {text[i:]!r} (not modelled)")
            if m.group(1) is not None:
                if m.group(1) not in os.environ:
                    raise RuntimeError(f"TCL: can't read \"env({m.group(1)})\": no such variable")
                out.append(os.environ[m.group(1)])
            else:
                out.append("1" if GUI else "0")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tcl(cmd: str, *args: str) -> str:
    if cmd == "subst":
        return _tcl_subst(args[0], thisNode())
    return _tcl_command([cmd, *args], thisNode())


# ---------------------------------------------------------------- images


def _all_channels():
    return [c for chans in _layers.values() for c in chans]


def _format_size():
    parts = str(root()["format"].value()).split()
    return int(parts[0]), int(parts[1])


def _proxied(size: int) -> int:
    r = root()
    return max(1, int(size * r["proxy_scale"].value())) if r["proxy"].value() else size


class _Img(dict):
    """Channel name -> (format height, format width) float32 plane, rows top first, zero
    outside ``bbox`` = (x, y, r, t) in Nuke's pixel coordinates (y up, r and t exclusive)."""

    def __init__(self, planes=(), bbox=None):
        dict.__init__(self, planes)
        w, h = _format_size()
        self.bbox = tuple(bbox) if bbox is not None else (0, 0, w, h)

    def copy(self):
        return _Img({k: v.copy() for k, v in self.items()}, self.bbox)

    def rows_cols(self):
        """Array slices of the bbox."""
        w, h = _format_size()
        x, y, r, t = self.bbox
        return slice(max(0, h - t), max(0, h - y)), slice(max(0, x), min(w, r))

    def grown_to(self, bbox):
        """Over ``bbox``; what it gains repeats the edge pixels (see :func:`_grow`)."""
        return _grow(self, bbox)

    def clipped_to(self, bbox):
        """Pixels outside ``bbox`` set to 0, bbox = ``bbox`` (may grow: new area is black)."""
        out = _Img({}, bbox)
        keep = _intersect(self.bbox, bbox)
        for k, v in self.items():
            plane = np.zeros_like(v)
            if keep is not None:
                rows, cols = _Img({}, keep).rows_cols()
                plane[rows, cols] = v[rows, cols]
            out[k] = plane
        return out


def _grow(img: "_Img", bbox) -> "_Img":
    """``img`` over ``bbox``: inside its own bbox as it is, outside that the nearest edge
    pixel of it (Nuke's rule for reading outside a bbox), 0 outside ``bbox``."""
    out = _Img({}, bbox)
    rows, cols = img.rows_cols()
    new_rows, new_cols = _Img({}, bbox).rows_cols()
    for k, v in img.items():
        plane = np.zeros_like(v)
        if rows.stop > rows.start and cols.stop > cols.start and \
                new_rows.stop > new_rows.start and new_cols.stop > new_cols.start:
            ri = np.clip(np.arange(new_rows.start, new_rows.stop), rows.start, rows.stop - 1)
            ci = np.clip(np.arange(new_cols.start, new_cols.stop), cols.start, cols.stop - 1)
            plane[new_rows, new_cols] = v[np.ix_(ri, ci)]
        out[k] = plane
    return out


def _intersect(a, b):
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[2] and box[1] < box[3] else None


def _union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _black(channels=("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")):
    w, h = _format_size()
    return _Img({c: np.zeros((h, w), np.float32) for c in channels})


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
        self._deleted = False
        for name, cls in {**_COMMON, **self._KNOBS}.items():
            self.addKnob(cls(name))

    def _alive(self) -> None:
        if self._deleted:  # as Nuke: the Python object outlives the node it wrapped
            raise ValueError("A PythonObject is not attached to a node")

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        self._alive()
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
        self._alive()
        if isinstance(p, int):
            return list(self._knobs.values())[p]
        return self._knobs.get(p)

    def knobs(self):
        self._alive()
        return dict(self._knobs)

    def allKnobs(self):
        return list(self._knobs.values())

    def addKnob(self, knob: Knob) -> None:
        knob._node = self
        self._knobs[knob.name()] = knob

    def removeKnob(self, knob: Knob) -> None:
        del self._knobs[knob.name()]

    def __getitem__(self, name: str) -> Knob:
        self._alive()
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
        """The format's width; in proxy mode the proxy's (``root.proxy_scale`` of it), as
        Nuke gives it."""
        return _proxied(_format_size()[0])

    def height(self) -> int:
        return _proxied(_format_size()[1])

    def _image(self, frame: int) -> "_Img":
        src = self.input(0)
        return src._image(frame).copy() if src is not None else _black()


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
              "project_directory": String_Knob, "proxy": Boolean_Knob, "views": String_Knob,
              "proxy_scale": Double_Knob}
    _MAX_INPUTS = 0

    def __init__(self):
        Group.__init__(self)
        self["first_frame"].setValue(1)
        self["last_frame"].setValue(100)
        self["proxy_scale"].setValue(0.5)
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
        return src._image(frame).copy() if src is not None else _black()


class Output(Node):
    pass


class Dot(Node):
    pass


class NoOp(Node):
    pass


class TimeOffset(Node):
    """Frame f shows its input's frame f - time_offset (reverse_input not modelled)."""
    _KNOBS = {"time_offset": Int_Knob, "reverse_input": Boolean_Knob}

    def _image(self, frame):
        if self["reverse_input"].value():
            raise NotImplementedError("nuke double: TimeOffset reverse_input")
        return Node._image(self, frame - int(self["time_offset"].value()))


class FrameHold(Node):
    """Nuke 12+'s knobs: every frame shows ``firstFrame``, or with ``increment`` n the last
    multiple of n frames from it."""
    _KNOBS = {"firstFrame": Int_Knob, "increment": Int_Knob}

    def _image(self, frame):
        first, step = int(self["firstFrame"].value()), int(self["increment"].value())
        held = first if step <= 0 or frame <= first else first + (frame - first) // step * step
        return Node._image(self, held)


class Copy(Node):
    # Nuke's Copy copies up to four channels, from<i> of input A (1) to to<i> of B (0);
    # disabled, it passes B through
    _KNOBS = {**{f"{d}{i}": Channel_Knob for i in range(4) for d in ("from", "to")},
              "bbox": String_Knob}
    _MAX_INPUTS = 2

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self["from0"].setValue("rgba.alpha")
        self["to0"].setValue("rgba.alpha")
        for i in range(1, 4):
            self[f"from{i}"].setValue("none")
            self[f"to{i}"].setValue("none")
        self["bbox"].setValue("union")

    def _image(self, frame):
        b = Node._image(self, frame)
        a_node = self.input(1)
        if a_node is None or self["disable"].value():
            return b
        a = a_node._image(frame)
        shape = next(iter(b.values())).shape
        for i in range(4):
            name, target = self[f"from{i}"].value(), self[f"to{i}"].value()
            if name == "none" or target == "none":
                continue
            src = a.get(name)
            if src is None:
                src = np.zeros(shape, np.float32)
            if src.shape != shape:
                raise RuntimeError(f"{self.name()}: A is {src.shape[::-1]}, B is {shape[::-1]}")
            b[target] = src
        mode = self["bbox"].value()
        box = {"B": b.bbox, "A": a.bbox, "union": _union(a.bbox, b.bbox),
               "intersection": _intersect(a.bbox, b.bbox) or (0, 0, 0, 0)}[mode]
        return b.clipped_to(box) if box != b.bbox else b


class Crop(Node):
    """``box`` "x y r t": the bbox shrinks to box and input bbox overlap (``reformat`` off)."""

    _KNOBS = {"box": String_Knob}

    def _image(self, frame):
        img = Node._image(self, frame)
        box = tuple(int(float(v)) for v in self["box"].value().split())
        return img.clipped_to(_intersect(img.bbox, box) or (0, 0, 0, 0))


class CopyBBox(Node):
    """Input 0 (B) with the bbox of input 1 (A); the area the bbox gains repeats B's edge
    pixels, as anything Nuke reads outside a bbox (BlackOutside before it makes it black)."""

    _MAX_INPUTS = 2

    def _image(self, frame):
        b = Node._image(self, frame)
        a = self.input(1)
        return b if a is None else b.grown_to(a._image(frame).bbox)


class BlackOutside(Node):
    """The bbox one pixel larger on each side, that border black: what is read outside it
    (its edge repeated) is black."""

    def _image(self, frame):
        img = Node._image(self, frame)
        x, y, r, t = img.bbox
        return img.clipped_to((x - 1, y - 1, r + 1, t + 1))


def _enum(*values):
    return lambda name: Enumeration_Knob(name, name, values)


class Read(Node):
    _KNOBS = {"file": File_Knob, "proxy": File_Knob, "first": Int_Knob, "last": Int_Knob,
              "before": _enum("hold", "loop", "bounce", "black"),
              "after": _enum("hold", "loop", "bounce", "black"),
              "on_error": _enum("error", "black", "checkerboard", "nearest frame"),
              "raw": Boolean_Knob, "colorspace": String_Knob, "format": String_Knob}
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
        # %V: the view being rendered (outside a render, the viewer's: the first view)
        view = _state["view"] or views()[0]
        path = _frame_path(_tcl_subst(self["file"].value(), self).replace("%V", view), frame)
        if path not in self._cache:
            if not os.path.isfile(path):
                if self["on_error"].value() == "black":
                    return _black()
                raise RuntimeError(f"{self.fullName()}: Read error: {path}: "
                                   "No such file or directory")
            inp = oiio.ImageInput.open(path)
            if inp is None:
                raise RuntimeError(f"{self.fullName()}: Read error: {path}: {oiio.geterror()}")
            spec = inp.spec()
            pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
            inp.close()
            self.reads += 1
            w, h = _format_size()
            if (spec.full_width, spec.full_height) != (w, h):
                raise NotImplementedError("nuke double: Read of a file whose display window "
                                          "is not the root format")
            # the data window (y down, top row first) becomes the bbox (y up)
            bbox = (spec.x, h - (spec.y + spec.height), spec.x + spec.width, h - spec.y)
            img = _Img({}, bbox)
            r0, c0 = spec.y, spec.x
            rr = slice(max(0, r0), min(h, r0 + spec.height))
            cc = slice(max(0, c0), min(w, c0 + spec.width))
            for i, n in enumerate(spec.channelnames):
                plane = np.zeros((h, w), np.float32)
                plane[rr, cc] = pixels[rr.start - r0:rr.stop - r0, cc.start - c0:cc.stop - c0, i]
                img[_from_file_channel(n)] = plane
            self._cache[path] = img
        return self._cache[path].copy()


class Write(Node):
    _KNOBS = {"file": File_Knob, "file_type": String_Knob,
              "datatype": _enum("16 bit half", "32 bit float"),
              "channels": String_Knob, "raw": Boolean_Knob, "colorspace": String_Knob,
              "compression": _enum("none", "Zip (1 scanline)", "Zip (16 scanlines)",
                                   "PIZ Wavelet (32 scanlines)", "RLE", "B44", "B44A", "DWAA",
                                   "DWAB"),
              "create_directories": Boolean_Knob, "proxy": File_Knob,
              "first": Int_Knob, "last": Int_Knob, "use_limit": Boolean_Knob,
              "views": String_Knob, "beforeRender": String_Knob, "afterRender": String_Knob,
              "beforeFrameRender": String_Knob, "afterFrameRender": String_Knob}

    def __init__(self, *args, **kwargs):
        Node.__init__(self)
        self["channels"].setValue("rgb")
        self["datatype"].setValue("16 bit half")
        self["file_type"].setValue("exr")
        self["compression"].setValue("Zip (16 scanlines)")
        for cls_knob, value in _knob_defaults.items():  # studio defaults, as Nuke applies them
            cls_name, _, knob = cls_knob.partition(".")
            if cls_name == "Write":
                _apply_knob(self, knob, value)

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

    def _write(self, frame: int, view: str = "main") -> str:
        tag = None
        if not self["raw"].value():
            tag = self["colorspace"].value()
            if tag != root()["workingSpaceLUT"].value():
                raise NotImplementedError("nuke double: Write colour conversion is not "
                                          "modelled; use raw or the working space")
        if self["file_type"].value() != "exr":
            raise NotImplementedError("nuke double: Write writes exr only")
        for knob in ("beforeFrameRender",):
            _run_python(self[knob].value(), self)
        img = Node._image(self, frame)
        names = self._channels(img)
        shape = next(iter(img.values())).shape
        rows, cols = img.rows_cols()
        data = np.stack([img.get(c, np.zeros(shape, np.float32))[rows, cols] for c in names],
                        axis=-1)
        path = _frame_path(_tcl_subst(self["file"].value(), self).replace("%V", view), frame)
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            if not self["create_directories"].value():
                raise RuntimeError(f"{self.name()}: Can't write {path}: No such file or directory")
            os.makedirs(folder)
        fmt = oiio.FLOAT if self["datatype"].value() == "32 bit float" else oiio.HALF
        spec = oiio.ImageSpec(data.shape[1], data.shape[0], len(names), fmt)
        w, h = _format_size()
        spec.x, spec.y = cols.start, rows.start  # data window = bbox; display window = format
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, w, h
        spec.channelnames = tuple(_to_file_channel(c) for c in names)
        spec.attribute("compression", _EXR_COMPRESSION[self["compression"].value()])
        if tag:
            spec.attribute("oiio:ColorSpace", tag)
        tmp = f"{path}.tmp{os.getpid()}.exr"  # Nuke renders to a temp file, then renames
        out = oiio.ImageOutput.create(tmp)
        if out is None or not out.open(tmp, spec):
            raise RuntimeError(f"{self.name()}: Can't write {path}: {oiio.geterror()}")
        out.write_image(data)
        out.close()
        os.replace(tmp, path)
        return path


_EXR_COMPRESSION = {"none": "none", "Zip (1 scanline)": "zips", "Zip (16 scanlines)": "zip",
                    "PIZ Wavelet (32 scanlines)": "piz", "RLE": "rle", "B44": "b44",
                    "B44A": "b44a", "DWAA": "dwaa", "DWAB": "dwab"}
_CLASSES = {c.__name__: c for c in (Node, Group, Input, Output, Dot, NoOp, Copy, Crop, CopyBBox,
                                    BlackOutside, Read, Write, TimeOffset, FrameHold)}
_knob_defaults: dict[str, str] = {}
_root = Root()
_group_stack: list = []
_this: list = []
_state = {"frame": 1, "executing": False, "view": None}  # view: the one being rendered


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


def _run_callback(code: str, node, knob=None) -> None:
    """onCreate / knobChanged: Nuke prints a failing callback's traceback and carries on."""
    try:
        _run_python(code, node, knob)
    except Exception:
        traceback.print_exc()


def _fire_knob_changed(node, knob_name: str) -> None:
    """Test hook: what Nuke does when the user edits a knob in the panel."""
    _run_callback(node["knobChanged"].value(), node, node[knob_name])


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
    _run_callback(node["onCreate"].value(), node)
    return node


class _Nodes:
    def __getattr__(self, cls_name):
        def make(**knobs):
            node = _new_node(cls_name)
            for name, value in knobs.items():
                _apply_knob(node, name, value)
            _run_callback(node["onCreate"].value(), node)
            return node
        return make


nodes = _Nodes()


def delete(n) -> None:
    callbacks._run("onDestroys", n)  # before it goes, with thisNode() the node, as in Nuke
    n._parent._nodes.remove(n)
    n._deleted = True
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
    executeMultiple([nameOrNode], [(start, end, incr)], views, continueOnError)


def executeMultiple(nodes, ranges, views, continueOnError=False) -> None:
    """Render Writes over frame ranges ((first, last, incr), ...) and views in one pass.

    Per node: its ``beforeRender``, each frame (``beforeFrameRender``), ``afterRender``, as
    Nuke runs them; proxy mode renders at proxy scale, which the double does not model.
    """
    writes = []
    for n in nodes:
        node = toNode(n) if isinstance(n, str) else n
        if node is None or not isinstance(node, Write):
            raise RuntimeError(f"{n}: cannot execute (not a Write)")
        writes.append(node)
    if _state["executing"]:
        raise RuntimeError("I'm already executing something else")
    if root()["proxy"].value():
        raise NotImplementedError("nuke double: rendering in proxy mode is not modelled")
    ranges = [tuple(int(v) for v in r) for r in ranges]
    _renders.append({"writes": [w.name() for w in writes], "ranges": ranges,
                     "views": list(views or ["main"])})
    _state["executing"] = True
    try:
        for w in writes:
            _run_python(w["beforeRender"].value(), w)
            callbacks._run("beforeRenders", w)
        for first, last, incr in ranges:
            for f in range(first, last + 1, incr):
                frame(f)
                for w in writes:
                    if w["use_limit"].value() and not (
                            int(w["first"].value()) <= f <= int(w["last"].value())):
                        continue  # "limit to range": Nuke renders no frame outside it
                    for view in views or ["main"]:
                        _state["view"] = view
                        w._write(f, view)
        for w in writes:
            _run_python(w["afterRender"].value(), w)
            callbacks._run("afterRenders", w)
    finally:
        _state["executing"] = False
        _state["view"] = None


REPLACE, REPLACE_VIEWS = 1, 2


def filename(node, i=None):
    """The node's file knob with its TCL expanded; frame placeholders kept (``####`` as
    ``%04d``) unless ``i`` is REPLACE. In proxy mode (``root.proxy``) the proxy knob's file
    where the node has one, as Nuke does."""
    knob = node.knob("file")
    if knob is None:
        return None
    proxy = node.knob("proxy")
    if root()["proxy"].value() and proxy is not None and str(proxy.value()).strip():
        knob = proxy
    text = re.sub(r"#+", lambda m: "%%0%dd" % len(m.group(0)), _tcl_subst(knob.value(), node))
    return _frame_path(text, frame()) if i == REPLACE else text


def views():
    return [v for v in root()["views"].value().split() if v] or ["main"]


def knobDefault(classknob: str, value=None):
    if value is None:
        return _knob_defaults.get(classknob)
    _knob_defaults[classknob] = value
    return None


class _Callbacks:
    """``nuke.callbacks``: the per-class callback dicts Nuke's own callbacks.py keeps."""

    def __init__(self):
        for name in ("updateUIs", "beforeRenders", "afterRenders", "beforeFrameRenders",
                     "afterFrameRenders", "onDestroys", "onScriptCloses"):
            setattr(self, name, {})

    def _add(self, table, call, args, kwargs, nodeClass):
        getattr(self, table).setdefault(nodeClass, []).append((call, tuple(args), dict(kwargs)))

    def _run(self, table, node) -> None:
        d = getattr(self, table)
        for cls in ("*", node.Class()):
            for call, args, kwargs in list(d.get(cls, ())):
                _this.append((node, None))
                try:
                    call(*args, **kwargs)
                finally:
                    _this.pop()


callbacks = _Callbacks()


def addUpdateUI(call, args=(), kwargs={}, nodeClass="*") -> None:
    callbacks._add("updateUIs", call, args, kwargs, nodeClass)


def addOnDestroy(call, args=(), kwargs={}, nodeClass="*") -> None:
    callbacks._add("onDestroys", call, args, kwargs, nodeClass)


def addOnScriptClose(call, args=(), kwargs={}, nodeClass="Root") -> None:
    callbacks._add("onScriptCloses", call, args, kwargs, nodeClass)


def addBeforeRender(call, args=(), kwargs={}, nodeClass="Write") -> None:
    callbacks._add("beforeRenders", call, args, kwargs, nodeClass)


def addAfterRender(call, args=(), kwargs={}, nodeClass="Write") -> None:
    callbacks._add("afterRenders", call, args, kwargs, nodeClass)


def _run_update_ui() -> None:
    """Test hook: Nuke runs updateUI callbacks on idle after any change to the script."""
    for node in allNodes(group=_root, recurseGroups=True):
        callbacks._run("updateUIs", node)


# ---------------------------------------------------------------- threads


def executeInMainThread(call, args=(), kwargs={}) -> None:
    """Queue ``call`` for the main thread's event loop (``_process_events``)."""
    # Nuke's executeInMainThread.py: anything but a tuple is the one argument
    _main_queue.put((call, args if isinstance(args, tuple) else (args,), dict(kwargs), None))


def executeInMainThreadWithResult(call, args=(), kwargs={}):
    """Run ``call`` on the main thread and return its result, as Nuke's executeInMain.py:
    the call is queued and waited for, so from the main thread it never returns (raised
    here); an error in the call is printed and the result is None."""
    args = args if isinstance(args, tuple) else (args,)
    if threading.current_thread() is _MAIN:
        raise RuntimeError("nuke double: executeInMainThreadWithResult from the main thread "
                           "waits for itself: Nuke freezes")
    box: dict = {"done": threading.Event()}
    _main_queue.put((call, args, dict(kwargs), box))
    # Nuke waits for ever; a test whose main thread never processes events fails instead
    if not box["done"].wait(MAIN_THREAD_WAIT_S):
        raise RuntimeError("nuke double: the main thread never ran the call (is it blocked?)")
    return box.get("result")


def _process_events(timeout: float = 0.05) -> int:
    """Test hook: the main thread's event loop runs queued calls for up to ``timeout`` s."""
    assert threading.current_thread() is _MAIN, "only the main thread processes events"
    ran = 0
    try:
        item = _main_queue.get(timeout=timeout)
    except queue.Empty:
        return 0
    while True:
        call, args, kwargs, box = item
        try:
            result = call(*args, **kwargs)
            if box is not None:
                box["result"] = result
        except Exception:  # Nuke prints the errors of both kinds of queued call
            traceback.print_exc()
        finally:
            if box is not None:
                box["done"].set()
        ran += 1
        try:
            item = _main_queue.get_nowait()
        except queue.Empty:
            return ran


def _main_only(func):
    @functools.wraps(func)
    def guarded(*args, **kwargs):
        if threading.current_thread() is not _MAIN:
            raise RuntimeError(f"nuke.{func.__qualname__} called from thread "
                               f"{threading.current_thread().name!r}: Nuke's API belongs to the "
                               "main thread (use nuke.executeInMainThread)")
        return func(*args, **kwargs)
    return guarded


def sample(node, channel: str, x, y, dx=1, dy=1) -> float:
    img = node._image(frame())
    plane = img[channel]
    # Nuke's y axis points up, files are stored top row first
    return float(plane[plane.shape[0] - 1 - int(y), int(x)])


class ProgressTask:
    """Usable from any thread, as in Nuke. Records what the plugin reports and from which
    threads (``threads``); ``cancel_when(task)`` (class hook) decides isCancelled, and
    ``cancelled_at`` records when it first said yes (time.monotonic())."""

    cancel_when = None
    tasks: list = []

    def __init__(self, s):   # the stubs' signatures (types-nuke)
        self.title = s
        self.messages: list[str] = []
        self.progress: list[int] = []
        self.threads: set[str] = set()
        self.cancelled_at = None
        self.closed = False
        ProgressTask.tasks.append(self)

    def _seen(self):
        self.threads.add(threading.current_thread().name)

    def setMessage(self, s):
        self._seen()
        self.messages.append(s)

    def setProgress(self, i):
        self._seen()
        self.progress.append(int(i))

    def isCancelled(self):
        self._seen()
        hook = ProgressTask.cancel_when
        yes = bool(hook and hook(self))
        if yes and self.cancelled_at is None:
            import time
            self.cancelled_at = time.monotonic()
        return yes

    def __del__(self):
        self.closed = True


def message(prompt: str) -> None:
    _messages.append(prompt)
    if not GUI:
        print(prompt)


def warning(message: str) -> None:
    """Nuke: into the error console as a warning (stderr in terminal mode); no dialog."""
    _console.append(message)
    if not GUI:
        print(message, file=sys.stderr)


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
    elif cls is Link_Knob:
        knob = cls(uk.name, uk.label or None)
        knob.setLink(uk.text)
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
        _run_callback(node["onCreate"].value(), node)
    return created


def scriptClear(*args, **kwargs) -> None:
    global _root
    _root = Root()
    _group_stack.clear()
    _layers.clear()
    _layers["rgba"] = ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]


def scriptClose() -> None:
    """Close the script: onScriptClose callbacks (``thisNode()`` the root), then a new one."""
    callbacks._run("onScriptCloses", _root)
    scriptClear()


def scriptOpen(filename=None) -> None:
    scriptClear()
    with open(filename, encoding="utf-8") as f:
        statements = nk_script.parse(f.read())
    _root["name"].setValue(os.path.abspath(filename))
    _build(statements)


def scriptReadText(s: str) -> None:
    _build(nk_script.parse(s))


def _guard_api() -> None:
    """Wrap every public call of nodes, knobs and the module in the main-thread check."""
    free = {"executeInMainThread", "executeInMainThreadWithResult", "ProgressTask",
            "callbacks"}
    module = sys.modules[__name__]
    for name, obj in list(vars(module).items()):
        if name.startswith("_") or name in free:
            continue
        if isinstance(obj, type) and issubclass(obj, (Knob, Node)):
            for attr, fn in list(vars(obj).items()):
                if callable(fn) and (not attr.startswith("_") or attr == "__getitem__"):
                    setattr(obj, attr, _main_only(fn))
        elif callable(obj) and getattr(obj, "__module__", None) == __name__ \
                and not isinstance(obj, type):
            setattr(module, name, _main_only(obj))
    module.nodes = _GuardedNodes()


class _GuardedNodes(_Nodes):
    def __getattr__(self, cls_name):
        return _main_only(_Nodes.__getattr__(self, cls_name))


_guard_api()
