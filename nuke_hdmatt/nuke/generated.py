"""What an HDMatt node's alpha was generated from, as digests: the upstream graph of each
input and the weights the engine used, so the node can say what changed since
(``node.fingerprint`` and ``node.stale_reasons`` put these together with the node's engine
call, which is built in ``node``).

Imports ``nuke``; main thread only (it walks the node graph).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import nuke

from ..engine.weights import verified_sha256  # torch-free: the engine's own check
from ..errors import HDMattError
from ..sequence import FrameSequence
from .export import views

# knobs of upstream nodes that do not change pixels (left out of the stale check)
_UI_KNOBS = frozenset({
    "name", "xpos", "ypos", "selected", "label", "note_font", "note_font_size",
    "note_font_color", "tile_color", "gl_color", "hide_input", "help", "onCreate",
    "knobChanged", "indicators", "icon", "postage_stamp", "postage_stamp_frame", "bookmark",
    "dope_sheet", "reload", "cached", "status", "generated", "failed_frames", "engine_warnings",
    "range_first", "range_last", "generate", "generate_current", "clear_cache", "autolabel", "updateUI"})
_WEIGHTS_SHA: dict[tuple, str | None] = {}  # (path, size, mtime_ns) -> sha256
# Nuke runs updateUI callbacks on idle after every change: each Read file of every frame
# stat'ed each time is hundreds of round trips to a file server (a 200-frame shot with two
# Reads: 400). Those callbacks take stats up to this old; knob changes and Generate stat anew.
UI_STAT_AGE_S = 2.0
_STATS: dict[str, tuple[float, list[int] | None]] = {}  # path -> (when, [size, mtime_ns])


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: What a record's per-frame file digests mean: 2, each Read's file at the frame the time
#: nodes between make it read; 1 (records before it), the file at the node's own frame.
FILES_VERSION = 2
_MAX_MAPPINGS = 8  # frame mappings walked per node before every frame counts (a ladder of
                   # TimeOffsets merged back doubles the paths with each rung)


def graph_digests(start, frames: list[int], max_age: float = 0.0,
                  follow_time: bool = True) -> tuple[str, dict[int, str]]:
    """Upstream of ``start``: a digest of the graph (node classes, knob values but UI ones,
    groups' insides) and one a frame of what its Reads read there (each file's size and
    modification time, stat'ed at most ``max_age`` seconds ago). Per frame, so a record of
    several Generates (each of other frames) compares each frame with what made it.

    The frame a Read reads is followed through the time nodes between it and ``start``
    (:func:`_time_op`): a TimeOffset of 10 makes frame 1010's alpha depend on the plate's
    frame 1000, not its 1010. A group's Reads count as reached from its Output node.
    ``follow_time=False``: every Read's file at ``start``'s own frame (records of
    :data:`FILES_VERSION` 1)."""
    items: list = []
    reads: list = []
    seen: set = set()
    walked: set = set()
    mappings: dict[int, set] = {}
    todo: list = [(start, (), True)]  # (node, frame mapping, whether its Reads count)
    while todo:
        n, ops, reading = todo.pop()
        if n is None:
            continue
        if reading and follow_time:
            known = mappings.setdefault(id(n), set())
            if ops not in known and len(known) >= _MAX_MAPPINGS:
                ops = (_ANY,)
            known.add(ops)
        if (id(n), ops, reading) in walked:
            continue
        walked.add((id(n), ops, reading))
        if id(n) not in seen:
            seen.add(id(n))
            items.append({"class": n.Class(), "knobs": _knob_scripts(n)})
        if reading and n.Class() == "Read":
            text = full_res_file(n)
            reads += [(n, FrameSequence(text.replace("%V", view)), ops)
                      for view in (views() if "%V" in text else [""])]
        inner = list(n.nodes()) if hasattr(n, "nodes") and n.Class() != "Root" else []
        up = _then(ops, _time_op(n, inner)) if reading and follow_time else ops
        todo.extend((n.input(i), up, reading) for i in range(n.inputs()))
        # inside a group, what reaches its Output is what it shows (and its time nodes
        # apply to the Reads there); the rest counts for the graph's digest only
        outputs = [m for m in inner if m.Class() == "Output"] if follow_time else []
        todo.extend((m, ops, reading and (not outputs or m in outputs)) for m in inner)
    memo: dict = {}  # a retimed Read's every frame, stat'ed and digested once, not per frame
    return digest(items), {f: digest([_stats(read, seq, ops, f, max_age, memo, follow_time)
                                      for read, seq, ops in reads]) for f in frames}


def _stats(read, seq: FrameSequence, ops: tuple, frame: int, max_age: float, memo: dict,
           follow_time: bool = True):
    frames = tuple(_read_frames(read, ops, frame)) if follow_time else (frame,)
    if len(frames) == 1:  # its stat alone, as records made before time nodes were followed
        return _stat(seq, frames[0], max_age)
    key = (seq.pattern, frames)
    if key not in memo:
        memo[key] = digest([_stat(seq, f, max_age) for f in frames])
    return memo[key]


def _knob_scripts(n) -> dict:
    knobs = {}
    for name, knob in sorted(n.knobs().items()):
        if name in _UI_KNOBS:
            continue
        try:
            knobs[name] = knob.toScript()
        except Exception:  # a knob type that does not script (buttons, custom UI)
            continue
    return knobs


# nodes that read their input at other frames than their own, in ways not followed here: the
# Reads above them count with every frame of their range (stale if any of those changed)
_RETIMING = frozenset({"Retime", "TimeWarp", "TimeClip", "AppendClip", "FrameBlend", "TimeEcho",
                       "TimeBlur", "OFlow", "OFlow2", "Kronos", "MotionBlur", "TemporalMedian",
                       "VectorGenerator", "SmartVector", "VectorDistort"})
_ANY = ("any",)


def _knob_number(n, *names, default: float = 0.0) -> float:
    for name in names:
        knob = n.knob(name)
        if knob is not None:
            return float(knob.value())
    return default


def _time_op(n, inner: list) -> tuple | None:
    """How node ``n`` maps its frame to the frame its inputs are read at: ``("shift", k)``
    (input frame = frame + k), ``("hold", first, increment)``, :data:`_ANY` (not followed),
    or None (the same frame)."""
    disable = n.knob("disable")
    if disable is not None and disable.value():
        return None
    cls = n.Class()
    if cls == "TimeOffset":
        if n.knob("reverse_input") is not None and n["reverse_input"].value():
            return _ANY
        shift = -int(round(_knob_number(n, "time_offset")))
        return ("shift", shift) if shift else None
    if cls == "FrameHold":  # knob names of Nuke 12+ and of older scripts
        return ("hold", int(round(_knob_number(n, "firstFrame", "first_frame"))),
                int(round(_knob_number(n, "increment"))))
    if cls in _RETIMING or any(_time_op(m, list(m.nodes()) if hasattr(m, "nodes") else [])
                               for m in inner):
        return _ANY  # a group that retimes inside (at any depth): not followed through it
    return None


def _then(ops: tuple, op: tuple | None) -> tuple:
    """The mapping ``ops`` followed by ``op`` (further upstream), in one canonical form, so
    paths that map frames alike are walked once: shifts summed, everything before a hold
    of one frame forgotten (every frame maps to it), nothing after "any" but such a hold."""
    if op is None:
        return ops
    if op[0] == "hold" and op[2] <= 0:
        return (op,)
    if ops[-1:] == (_ANY,) or op == _ANY:
        return (_ANY,)
    last = ops[-1] if ops else None
    if op[0] == "shift" and last is not None and last[0] == "shift":
        total = last[1] + op[1]
        return ops[:-1] + ((("shift", total),) if total else ())
    if op[0] == "shift" and last is not None and last[0] == "hold" and last[2] <= 0:
        return ops[:-1] + (("hold", last[1] + op[1], 0),)
    return ops + (op,)


def _read_frames(read, ops: tuple, frame: int) -> list[int]:
    """The frames of its files ``read`` reads for ``frame`` of the node the walk started at,
    after the time nodes ``ops`` between them (nearest first) and the Read's own range:
    before/after its first and last frame it holds, loops, bounces or is black."""
    first = int(_knob_number(read, "first", default=1))
    last = int(_knob_number(read, "last", default=first))
    own = read.knob("frame")  # the Read's own frame expression or offset: not followed
    if _ANY in ops or (own is not None and str(own.value()).strip()):
        return list(range(first, last + 1))
    f = frame
    for op in ops:
        if op[0] == "shift":
            f += op[1]
        else:
            _, hold, step = op
            f = hold if step <= 0 or f <= hold else hold + (f - hold) // step * step
    if first <= f <= last:
        return [f]
    mode = str(read[("before" if f < first else "after")].value()) if read.knob("before") else "hold"
    n = last - first + 1
    if mode == "black":
        return []
    if mode == "loop":
        return [first + (f - first) % n]
    if mode == "bounce" and n > 1:
        k = (f - first) % (2 * n - 2)
        return [first + (k if k < n else 2 * n - 2 - k)]
    return [min(max(f, first), last)]


def full_res_file(read) -> str:
    """The file pattern a Read reads at full resolution, which Generate renders (proxy off).
    In proxy mode ``nuke.filename`` names the Read's proxy file where it has one: stat'ing
    that would call the alpha stale whenever a compositor toggles proxy."""
    proxy = read.knob("proxy")
    if not (nuke.root()["proxy"].value() and proxy is not None and str(proxy.value()).strip()):
        return nuke.filename(read) or ""
    raw = str(read["file"].value())
    return nuke.tcl("subst", raw) if ("[" in raw or "$" in raw) else raw


def _stat(seq: FrameSequence, frame: int, max_age: float) -> list[int] | None:
    try:
        path = seq.path(frame)
    except ValueError:
        return None
    now = time.monotonic()
    seen = _STATS.get(path)
    if seen is not None and now - seen[0] <= max_age:
        return seen[1]
    try:
        st = os.stat(path)
        result: list[int] | None = [st.st_size, st.st_mtime_ns]
    except OSError:
        result = None
    _STATS[path] = (now, result)
    return result


def _weights_sha(path: str) -> str | None:
    """sha256 of a weights file as the engine checks it (against its ``.sha256``); None when
    missing or damaged. Remembered per size and modification time: status updates run often."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _WEIGHTS_SHA:
        try:
            _WEIGHTS_SHA[key] = verified_sha256(path)
        except HDMattError:
            _WEIGHTS_SHA[key] = None
    return _WEIGHTS_SHA[key]


def weights_changed(used: dict | None) -> bool:
    """Whether the engine would now load other weights than the ``used`` ones it reported
    (``{"path", "sha256"}``): the file ``$HDMATT_WEIGHTS`` names (the engine inherits Nuke's
    environment), else the reported one, has other content (or is gone)."""
    if not used:
        return False  # generated before the engine reported its weights: unknown
    path = os.environ.get("HDMATT_WEIGHTS") or used.get("path") or ""
    if not path:
        return bool(used.get("sha256"))  # untrained then, and still no file to compare
    return _weights_sha(path) != used.get("sha256")
