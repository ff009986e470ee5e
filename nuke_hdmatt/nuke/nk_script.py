"""Read the Nuke script format (``.nk`` / ``.gizmo``) without Nuke.

Used where Nuke is not running: ``hdmatt farm nuke`` checks that the named nodes exist before
emitting a job, and the test double builds nodes from the real ``gizmos/HDMatt.gizmo``. Stdlib
only. This reads the subset that Nuke writes for node graphs: node blocks
(``Class { knob value ... }``), ``addUserKnob {...}``, the node stack (``push $var``,
``push 0``, ``set var [stack 0]``), ``end_group``, ``add_layer`` and ``version``.

Stack rule (as Nuke writes scripts): a node with ``inputs N`` pops N entries; the top of the
stack is input 0, the entry below it input 1, and so on. The node is then pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Statement", "NodeBlock", "UserKnob", "parse", "tokens", "node_blocks"]

_ESC = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass
class Token:
    text: str
    line: int
    quoted: bool = False  # a "..." string or a {...} group: never a keyword
    braced: bool = False


def tokens(text: str) -> list[Token]:
    """Split script text into words, quoted strings (escapes resolved) and ``{...}`` groups."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#" and (not out or out[-1].line < line):
            while i < n and text[i] != "\n":  # comment line (e.g. the #! header)
                i += 1
        elif c == '"':
            i += 1
            buf = []
            start_line = line
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    buf.append(_ESC.get(text[i + 1], text[i + 1]))
                    i += 2
                    continue
                line += text[i] == "\n"
                buf.append(text[i])
                i += 1
            out.append(Token("".join(buf), start_line, quoted=True))
            i += 1
        elif c == "{":
            depth, j, start_line = 1, i + 1, line
            while j < n and depth:
                if text[j] == "\\":
                    j += 2
                    continue
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                line += text[j] == "\n"
                j += 1
            if depth:
                raise ValueError(f"line {start_line}: unbalanced '{{'")
            out.append(Token(text[i + 1:j - 1], start_line, quoted=True, braced=True))
            i = j
        else:
            j = i
            while j < n and not text[j].isspace():
                if text[j] == "\\" and j + 1 < n:
                    j += 2
                    continue
                j += 1
            word = text[i:j]
            out.append(Token(word.replace("\\[", "[").replace("\\]", "]"), line))
            i = j
    return out


@dataclass
class UserKnob:
    """One ``addUserKnob {TYPE name l LABEL ...}``: ``kind`` is Nuke's knob type number."""

    kind: int
    name: str
    label: str = ""
    values: list[str] = field(default_factory=list)  # M {...}: enumeration entries
    text: str = ""  # T ...: PyScript command or Text_Knob text
    tooltip: str = ""
    flags: list[str] = field(default_factory=list)  # +STARTLINE, +INVISIBLE, ...


@dataclass
class NodeBlock:
    """A ``Class { ... }`` block: knob values in file order and user knobs."""

    cls: str
    knobs: dict[str, str] = field(default_factory=dict)
    user_knobs: list[UserKnob] = field(default_factory=list)
    order: list[tuple[str, object]] = field(default_factory=list)  # ("knob", name) / ("user", UserKnob)
    line: int = 0

    @property
    def name(self) -> str | None:
        return self.knobs.get("name")

    def inputs(self, default: int) -> int:
        return int(self.knobs.get("inputs", default))


@dataclass
class Statement:
    """A top-level script command: ``node`` (with ``block``), ``push``, ``set``, ``end_group``,
    ``add_layer`` or ``version``."""

    kind: str
    block: NodeBlock | None = None
    arg: str = ""
    line: int = 0


def _user_knob(body: str) -> UserKnob:
    toks = tokens(body)
    if len(toks) < 2 or not toks[0].text.isdigit():
        raise ValueError(f"bad addUserKnob {{{body}}}")
    uk = UserKnob(int(toks[0].text), toks[1].text)
    i = 2
    while i < len(toks):
        t = toks[i].text
        if t[:1] in "+-" and not toks[i].quoted and len(t) > 1:
            uk.flags.append(t)
            i += 1
            continue
        val = toks[i + 1] if i + 1 < len(toks) else Token("", 0)
        if t == "l":
            uk.label = val.text
        elif t == "t":
            uk.tooltip = val.text
        elif t == "T":
            uk.text = val.text
        elif t == "M":
            uk.values = [v.text for v in tokens(val.text)]
        i += 2  # unknown keywords (R, n, ...) take one value
    return uk


def _node_block(cls: str, body: Token) -> NodeBlock:
    blk = NodeBlock(cls, line=body.line)
    toks = tokens(body.text)
    i = 0
    while i < len(toks):
        key = toks[i].text
        if key == "addUserKnob":
            uk = _user_knob(toks[i + 1].text)
            blk.user_knobs.append(uk)
            blk.order.append(("user", uk))
        else:
            if i + 1 >= len(toks):
                raise ValueError(f"line {body.line}: {cls} knob {key!r} has no value")
            blk.knobs[key] = toks[i + 1].text
            blk.order.append(("knob", key))
        i += 2
    return blk


def parse(text: str) -> list[Statement]:
    """Parse script text into top-level statements.

    Raises
    ------
    ValueError
        Unbalanced braces or a statement this reader does not know (with the line number).
    """
    toks = tokens(text)
    out: list[Statement] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "version" and not t.quoted:
            j = i + 1
            while j < len(toks) and toks[j].line == t.line:
                j += 1
            out.append(Statement("version", arg=" ".join(x.text for x in toks[i + 1:j]), line=t.line))
            i = j
        elif t.text == "push":
            out.append(Statement("push", arg=toks[i + 1].text, line=t.line))
            i += 2
        elif t.text == "set":
            # set NAME [stack 0]: the bracket splits into two words
            out.append(Statement("set", arg=toks[i + 1].text, line=t.line))
            i += 4
        elif t.text == "end_group":
            out.append(Statement("end_group", line=t.line))
            i += 1
        elif t.text in ("add_layer", "define_window_layout_xml"):
            out.append(Statement(t.text, arg=toks[i + 1].text, line=t.line))
            i += 2
        elif i + 1 < len(toks) and toks[i + 1].braced:
            out.append(Statement("node", block=_node_block(t.text, toks[i + 1]), line=t.line))
            i += 2
        elif t.text == "clone":
            raise ValueError(f"line {t.line}: cloned nodes are not supported")
        else:
            raise ValueError(f"line {t.line}: unexpected {t.text!r}")
    return out


def node_blocks(text: str) -> list[tuple[list[str], NodeBlock]]:
    """Every node block with its group path (names of the enclosing groups).

    Returns
    -------
    list of (group path, NodeBlock)
        ``(["Group1"], block)`` for a node inside ``Group1``; ``([], block)`` at top level.
    """
    out: list[tuple[list[str], NodeBlock]] = []
    path: list[str] = []
    for st in parse(text):
        if st.kind == "node":
            assert st.block is not None  # a node statement always carries its block
            out.append((list(path), st.block))
            # only Group/Gizmo blocks open a group; a saved gizmo instance (``HDMatt {...}``)
            # is a single block
            if st.block.cls in ("Group", "Gizmo"):
                path.append(st.block.name or st.block.cls)
        elif st.kind == "end_group" and path:
            path.pop()
    return out

