"""The HDMatt gizmo's Python: buttons, knob callbacks, input export, status.

The only module (with ``prepass``) that imports ``nuke``. It never imports torch: alphas come
from the engine process (:mod:`nuke_hdmatt.nuke.engine_call`). Nothing here runs during a
render: the gizmo's Read only shows frames the engine already wrote, so ``nuke -x`` never
reaches ``nuke.execute`` from a render callback.

Inside the gizmo (see ``gizmos/HDMatt.gizmo``): Input nodes ``plate`` (0), ``trimap`` (1),
``matte`` (2); Read ``alpha_read`` (file ``[value parent.alpha_file]``, raw, black on a
missing frame); Copy ``copy_alpha`` (A: rgba.alpha of the Read, B: the plate, bbox B) writing
the knob ``output_channel``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import nuke

from ..engine_env import engine_executable
from ..errors import Cancelled, HDMattError, PlateError, UsageError
from ..sequence import FrameSequence, format_frames, frames_on_disk, parse_frames
from .colour_settings import resolve_colour
from .engine_call import MatteJob, run_engine

__all__ = ["on_create", "knob_changed", "generate", "generate_current", "clear_cache",
           "update_status", "export_inputs", "matte_job", "default_alpha_file"]

INPUTS = (("plate", "rgb"), ("trimap", "rgba"), ("matte", "rgba"))
TRIMAP_CHANNELS = {"alpha": "A", "red": "R"}
ROOT_COLOUR_KNOBS = ("colorManagement", "OCIO_config", "customOCIOConfigPath", "workingSpaceLUT")


def _node(node=None):
    return node if node is not None else nuke.thisNode()


def default_alpha_file(node) -> str:
    """``<script folder>/hdmatt/<script name>/<node>/alpha.####.exr`` (temp folder if unsaved).

    Deterministic, so the same script finds the same frames on a workstation and a farm node.
    """
    script = nuke.root()["name"].value()
    node_dir = node.fullName().replace(".", "_")
    if script:
        stem = os.path.splitext(os.path.basename(script))[0]
        base = os.path.join(os.path.dirname(os.path.abspath(script)), "hdmatt", stem)
    else:
        base = os.path.join(tempfile.gettempdir(), "hdmatt", "untitled")
    return os.path.join(base, node_dir, "alpha.####.exr").replace("\\", "/")


def alpha_sequence(node) -> FrameSequence:
    if not node["alpha_file"].value():
        node["alpha_file"].setValue(default_alpha_file(node))
    return FrameSequence(node["alpha_file"].value())


def on_create() -> None:
    """``onCreate``: runs for new nodes and for every node of a loading script (also ``-x``)."""
    node = nuke.thisNode()
    alpha_sequence(node)
    apply_output_channel(node)


def knob_changed() -> None:
    node, knob = nuke.thisNode(), nuke.thisKnob()
    if knob.name() == "output_channel":
        apply_output_channel(node)
    elif knob.name() in ("alpha_file", "frames"):
        update_status(node)


def apply_output_channel(node) -> None:
    # Channel_Knob values cannot be linked by expression, hence this callback
    node.node("copy_alpha")["to0"].setValue(node["output_channel"].value())


def requested_frames(node, frames: str | None = None) -> list[int]:
    text = frames or node["frames"].value().strip()
    if not text:
        root = nuke.root()
        text = f"{int(root['first_frame'].value())}-{int(root['last_frame'].value())}"
    try:
        return parse_frames(text)
    except HDMattError as exc:
        raise UsageError(f"{node.name()}.frames: {exc.message.replace('--frames: ', '')}")


def _ranges(frames: list[int]):
    """Contiguous (first, last) runs of sorted frames."""
    runs = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return [tuple(r) for r in runs]


def export_inputs(node, frames: list[int], folder: str) -> dict:
    """Render the connected inputs to float EXR sequences in ``folder`` (raw, working space).

    Returns
    -------
    dict
        ``{"plate": pattern, "trimap": pattern or None, "matte": pattern or None}``.

    Raises
    ------
    UsageError
        No plate, or neither a trimap nor a matte connected.
    PlateError
        Nuke could not render an input (e.g. a Read's missing frame).
    Cancelled
        The user cancelled Nuke's render.
    """
    if node.input(0) is None:
        raise UsageError(f"{node.name()}: connect the plate input")
    if node.input(1) is None and node.input(2) is None:
        raise UsageError(f"{node.name()}: connect a trimap (or a matte to derive one)")
    paths = {name: None for name, _ in INPUTS}
    writes = []
    # beside the node, fed by what feeds it: the gizmo's insides stay as the file defines them
    group = node.parent()
    group.begin()
    try:
        for index, (name, channels) in enumerate(INPUTS):
            if node.input(index) is None or (name == "matte" and node.input(1) is not None):
                continue
            pattern = os.path.join(folder, f"{name}.####.exr").replace("\\", "/")
            write = nuke.nodes.Write(file=pattern, file_type="exr", datatype="32 bit float",
                                     channels=channels, raw=True)
            write.setInput(0, node.input(index))
            writes.append((name, write))
            paths[name] = pattern
        for name, write in writes:
            for first, last in _ranges(frames):
                try:
                    nuke.execute(write, first, last, 1)
                except RuntimeError as exc:  # what Nuke raises for a failed or cancelled render
                    if "cancel" in str(exc).lower():
                        raise Cancelled(f"cancelled while rendering the {name} input")
                    raise PlateError(f"{name} input, frames {first}-{last}: {exc}")
    finally:
        for _, write in writes:
            nuke.delete(write)
        group.end()
    return paths


def _root_colour() -> dict:
    root = nuke.root()
    return {k: root[k].value() for k in ROOT_COLOUR_KNOBS if root.knob(k) is not None}


def _knob_value(node, name: str, default):
    # nodes saved before the knob existed (or converted to plain groups) lack it
    knob = node.knob(name)
    return default if knob is None else knob.value()


def matte_job(node, paths: dict, frames: list[int]) -> MatteJob:
    """The engine call for ``node``'s knobs, the exported ``paths`` and ``frames``."""
    colour = resolve_colour(_root_colour(), getattr(nuke, "EXE_PATH", None),
                            plate_colorspace=node["plate_colorspace"].value())
    return MatteJob(
        plate=paths["plate"], trimap=paths["trimap"], matte=paths["matte"],
        band=int(node["band"].value()), output=alpha_sequence(node).pattern,
        frames=format_frames(frames),
        trimap_channel=TRIMAP_CHANNELS[node["trimap_channel"].value()],
        plate_colorspace=colour.colorspace, ocio=colour.config,
        cache=node["cache"].value().strip(), patch=int(node["patch"].value()),
        overlap=int(node["overlap"].value()), k=int(node["k"].value()),
        pool=int(node["pool"].value()), device=node["device"].value(),
        precision=node["precision"].value(), prior=_knob_value(node, "prior", "auto"))


def generate(node=None, frames: str | None = None) -> bool:
    """Button *Generate*: make the alpha for the node's frame range; True when all succeeded."""
    node = _node(node)
    try:
        if nuke.executing():
            raise UsageError(f"{node.name()}: cannot generate during a render; generate first "
                             "or use `hdmatt farm nuke`")
        return _generate(node, requested_frames(node, frames))
    except Cancelled as exc:
        update_status(node, note=f"cancelled ({exc})")
        return False
    except HDMattError as exc:
        report(node, exc.one_line())
        return False


def generate_current(node=None) -> bool:
    """Button *Generate current frame*."""
    return generate(node, str(nuke.frame()))


def _generate(node, frames: list[int]) -> bool:
    apply_output_channel(node)  # knobChanged does not fire for values set from Python
    exe = engine_executable()
    work = tempfile.mkdtemp(prefix="hdmatt_nuke_")
    task = nuke.ProgressTask(f"HDMatt {node.name()}")
    try:
        task.setMessage("rendering plate and trimap")
        paths = export_inputs(node, frames, work)
        if task.isCancelled():
            raise Cancelled("cancelled before the engine started")
        job = matte_job(node, paths, frames)
        log = os.path.join(work, "engine.jsonl")

        def progress(percent, message):
            task.setProgress(percent)
            task.setMessage(message)

        try:
            result = run_engine(job.argv(exe, log), log, len(frames), progress, task.isCancelled,
                                frame_done=lambda frame: _reload(node))
        finally:
            _reload(node)  # also after a cancel: the finished frames are on disk
    finally:
        del task  # Nuke closes the progress bar when the task is deleted
        shutil.rmtree(work, ignore_errors=True)
    failed = dict(result.failed)
    if result.returncode != 0 and not failed:
        # the engine died without a per-frame verdict: every frame it did not finish failed
        failed = {f: result.first_error() for f in frames if f not in result.done}
    node["failed_frames"].setValue(format_frames(sorted(failed)) if failed else "")
    update_status(node, frames)
    if failed:
        report(node, result.first_error() if result.failed else next(iter(failed.values())))
        return False
    return True


def _reload(node) -> None:
    node.node("alpha_read")["reload"].execute()


def update_status(node, frames: list[int] | None = None, note: str = "") -> str:
    """Status line: frames cached / missing / failed for the node's frame range."""
    try:
        frames = frames or requested_frames(node)
    except HDMattError as exc:
        node["status"].setValue(exc.one_line())
        return exc.one_line()
    seq = alpha_sequence(node)
    have = set(frames_on_disk(seq)) & set(frames)
    failed_text = node["failed_frames"].value().strip()
    failed = set(parse_frames(failed_text)) - have if failed_text else set()
    missing = set(frames) - have - failed
    text = (f"{len(have)} cached, {len(missing)} missing, {len(failed)} failed "
            f"(frames {format_frames(frames)})")
    if failed:
        text += f"; failed: {format_frames(sorted(failed))}"
    if note:
        text += f"; {note}"
    node["status"].setValue(text)
    return text


def report(node, message: str) -> None:
    """A failure: on the node's status line, and in a dialog (GUI) or on stderr (terminal)."""
    line = message if message.startswith(node.name()) else f"{node.name()}: {message}"
    node["status"].setValue(f"error: {message}")
    if nuke.GUI:
        nuke.message(f"HDMatt failed\n{line}")
    else:
        print(f"HDMatt: {line}", file=sys.stderr)


def clear_cache(node=None) -> int:
    """Button *Clear cache*: delete this node's alpha frames, and the shared per-frame cache
    folder's entries when the cache knob names one. Returns how many alpha files went."""
    node = _node(node)
    seq = alpha_sequence(node)
    frames = frames_on_disk(seq)
    cache = node["cache"].value().strip()
    if nuke.GUI and not nuke.ask(f"Delete {len(frames)} alpha frames of {node.name()}"
                                 + (f" and every entry in {cache}?" if cache else "?")):
        return 0
    for f in frames:
        os.remove(seq.path(f))
    if cache:
        try:
            subprocess.run([engine_executable(), "cache", "clear", "--cache", cache],
                           check=True, capture_output=True, text=True, timeout=300)
        except (HDMattError, subprocess.SubprocessError, OSError) as exc:
            report(node, f"could not clear {cache}: {exc}")
    node["failed_frames"].setValue("")
    _reload(node)
    update_status(node)
    return len(frames)
