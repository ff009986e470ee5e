"""The HDMatt node's inputs rendered to EXR sequences for the engine process.

Imports ``nuke``; called on the main thread (Generate, before the engine starts).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time

import nuke

from ..errors import Cancelled, PlateError, UsageError
from ..sequence import format_frames

INPUTS = (("plate", "rgb"), ("trimap", "rgba"), ("matte", "rgba"))
# the plate as it arrives (float); a trimap's 0, 0.5 and 1 are exact in half, and a matte is
# only thresholded (0.05 / 0.95): half halves the largest of the temp files
DATATYPES = {"plate": "32 bit float", "trimap": "16 bit half", "matte": "16 bit half"}
# bytes a pixel of a frame's export before compression: rgb float + rgba half
EXPORT_BYTES_A_PIXEL = 3 * 4 + 4 * 2
# lossless and fast; set explicitly so a studio default (DWAA, B44) cannot make exports lossy
EXPORT_COMPRESSION = "Zip (1 scanline)"


WORK_PREFIX = "hdmatt_nuke_"
OWNER_FILE = "owner"  # "<host> <pid>" of the Nuke whose Generate made the folder
#: a work folder without an owner (an older version's) is a crashed Generate's after this
STALE_WORK_S = 24 * 3600


def new_work_folder() -> str:
    """A temp folder for one Generate's exported inputs, marked with its owner; first the
    folders of Generates whose Nuke is gone (a crash, a kill: their float EXRs, gigabytes,
    were never removed) go."""
    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(WORK_PREFIX)]
    except OSError:
        names = []
    for name in names:
        folder = os.path.join(root, name)
        if _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
    work = tempfile.mkdtemp(prefix=WORK_PREFIX)
    with open(os.path.join(work, OWNER_FILE), "w", encoding="utf-8") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return work


def _abandoned(folder: str) -> bool:
    """True for a work folder of a Generate on this machine whose process is gone."""
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as f:
            host, pid = f.read().split()
    except FileNotFoundError:
        try:
            return time.time() - os.stat(folder).st_mtime > STALE_WORK_S
        except OSError:
            return False
    except (OSError, ValueError):
        return False  # being written, or not ours to judge
    # (Windows' os.kill(pid, 0) would end that process, not ask after it)
    if host != socket.gethostname() or not pid.isdigit() or os.name != "posix":
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive (another user's process)
    return False


def connected(node) -> list[str]:
    """Names of the inputs the engine gets; refuses what it cannot use."""
    if node.input(0) is None:
        raise UsageError(f"{node.name()}: connect the plate input")
    if node.input(1) is None and node.input(2) is None:
        raise UsageError(f"{node.name()}: connect a trimap (or a matte to derive one)")
    if node.input(1) is not None and node.input(2) is not None:
        raise UsageError(f"{node.name()}: both a trimap and a matte are connected; the matte "
                         "only derives a trimap when there is none: disconnect one")
    return ["plate", "trimap" if node.input(1) is not None else "matte"]


def views() -> list[str]:
    return list(nuke.views()) if hasattr(nuke, "views") else ["main"]


def ranges(frames: list[int]):
    """Contiguous (first, last) runs of sorted frames."""
    runs: list[list[int]] = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return [tuple(r) for r in runs]


class _RenderCallbacksOff:
    """Studio ``nuke.addBeforeRender``-style callbacks stay off the temporary Writes."""

    TABLES = ("beforeRenders", "afterRenders", "beforeFrameRenders", "afterFrameRenders")

    def __enter__(self):
        cb = getattr(nuke, "callbacks", None)
        self.saved = {}
        for name in self.TABLES:
            table = getattr(cb, name, None)
            if isinstance(table, dict):
                self.saved[name] = dict(table)
                table.clear()
        return self

    def __exit__(self, *exc):
        cb = getattr(nuke, "callbacks", None)
        for name, saved in self.saved.items():
            table = getattr(cb, name)
            table.clear()
            table.update(saved)


def check_space(node, images: int, folder: str) -> None:
    """Refuse an export that could fill the disk of ``folder`` (the system temp: a full
    disk there stops Nuke and everything else on the machine), before anything renders."""
    need = images * node.input(0).width() * node.input(0).height() * EXPORT_BYTES_A_PIXEL
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UsageError(f"{node.name()}: the inputs ({images} plate image(s)) take up to "
                         f"{need / 2**30:.1f} GiB in {folder}, which has {free / 2**30:.1f} GiB "
                         "free; generate fewer frames at a time, or start Nuke with TMPDIR on "
                         "a larger disk")


def export_inputs(node, frames: list[int], folder: str, plate_space: str = "") -> dict:
    """Render the connected inputs to EXR sequences in ``folder``, in one pass: the plate in
    float, the trimap or matte in half (:data:`DATATYPES`).

    The plate's pixels are written as they arrive (no conversion) and tagged with
    ``plate_space`` when it is the working space; the trimap or matte is written over the
    plate's bbox (a CopyBBox), so a Roto with a smaller bbox lines up with the plate. The
    Writes are lossless (explicit compression), full resolution (proxy off for the render),
    every view (``%V``) in a stereo script, and run no studio render callbacks.

    Returns
    -------
    dict
        ``{"plate": pattern, "trimap": pattern or None, "matte": pattern or None}``;
        patterns contain ``%V`` when the script has more than one view.

    Raises
    ------
    UsageError
        No plate, no trimap or matte, or both.
    PlateError
        Nuke could not render an input (e.g. a Read's missing frame).
    Cancelled
        The user cancelled Nuke's render.
    """
    names = connected(node)
    all_views = views()
    stereo = len(all_views) > 1
    root = nuke.root()
    working = str(root["workingSpaceLUT"].value()) if root.knob("workingSpaceLUT") else ""
    paths: dict[str, str | None] = {name: None for name, _ in INPUTS}
    made = []
    # beside the node, fed by what feeds it: the gizmo's insides stay as the file defines them
    group = node.parent()
    group.begin()
    proxy = root.knob("proxy")
    proxy_was = proxy.value() if proxy is not None else False
    try:
        writes = []
        for index, (name, channels) in enumerate(INPUTS):
            if name not in names:
                continue
            pattern = os.path.join(folder, f"{name}.{'%V.' if stereo else ''}####.exr")
            pattern = pattern.replace("\\", "/")
            source = node.input(index)
            if index:
                # over the plate's bbox; Nuke fills what a bbox gains with the edge pixels
                # (a Rectangle's 1 would spread over the frame): black outside first, as
                # the engine reads a trimap outside its data window
                black = nuke.nodes.BlackOutside()
                made.append(black)
                black.setInput(0, source)
                bbox = nuke.nodes.CopyBBox()
                made.append(bbox)
                bbox.setInput(0, black)
                bbox.setInput(1, node.input(0))
                source = bbox
            write = nuke.nodes.Write(file=pattern, file_type="exr", datatype=DATATYPES[name],
                                     channels=channels, compression=EXPORT_COMPRESSION,
                                     create_directories=True,
                                     beforeRender="", afterRender="", beforeFrameRender="",
                                     afterFrameRender="", views=" ".join(all_views))
            made.append(write)  # at once: a knob refused below must not leave it in the script
            # a studio's Write defaults must not change the export: a frame range limit
            # would skip frames, autocrop would shrink the plate's data window
            for knob in ("use_limit", "autocrop"):
                if write.knob(knob) is not None:
                    write[knob].setValue(False)
            if index == 0 and plate_space and plate_space == working:
                write["colorspace"].setValue(working)  # no conversion; tags the EXR
                write["raw"].setValue(False)
            else:
                write["raw"].setValue(True)
            write.setInput(0, source)
            writes.append(write)
            paths[name] = pattern
        if proxy is not None:
            proxy.setValue(False)
        # sized with proxy off: in proxy mode an input's width and height are the proxy's
        check_space(node, len(frames) * len(all_views), folder)
        try:
            with _RenderCallbacksOff():
                nuke.executeMultiple(writes, [(a, b, 1) for a, b in ranges(frames)], all_views)
        except RuntimeError as exc:  # what Nuke raises for a failed or cancelled render
            if "cancel" in str(exc).lower():
                raise Cancelled("cancelled while rendering the inputs")
            raise PlateError(f"inputs, frames {format_frames(frames)}: {exc}")
    finally:
        if proxy is not None:
            proxy.setValue(proxy_was)
        for n in reversed(made):
            nuke.delete(n)
        group.end()
    return paths
