"""Run ``hdmatt matte`` as a separate process and follow its JSON log (stdlib only, no ``nuke``).

Nuke's Python never imports torch, so every alpha is made by the engine executable that
``install.py`` recorded. The same argument list serves the interactive node and the farm prepass.

JSON log (``--json-log FILE``, one object a line, written by :mod:`nuke_hdmatt.shot.progress`)
followed here; other events are ignored::

    {"event": "frame_start",  "frame": 1001, ...}
    {"event": "progress",     "frame": 1001, "done": 3, "total": 12, "stage": "patches",
     "fraction": 0.21}
    {"event": "frame_done",   "frame": 1001, "output": ".../alpha.1001.exr", "cached": false,
     "weights": "/abs/model/hdmatt.safetensors", "weights_sha256": "9f2c..."}
    {"event": "frame_failed", "frame": 1002, "error": "plate.1002.exr: truncated file"}
    {"event": "warning",      "frame": 1003, "text": "trimap.1003.exr: the trimap has no ..."}
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..engine.settings import InferenceSettings
from ..errors import Cancelled, UsageError
from ..sequence import FrameSequence

__all__ = ["EngineCall", "JOB_FILE", "EngineResult", "LogFollower", "run_engine", "popen_options",
           "remove_partial_outputs", "stop_all_engines", "STOP_GRACE_S"]

# The EngineCall that farm step 1 (the prepass) writes into its work folder for step 2.
JOB_FILE = "matte_job.json"

NICENESS = 10  # POSIX priority of the engine's process (0 normal, 19 lowest)
STOP_GRACE_S = 1.0  # Cancel: how long the engine gets to stop at a patch boundary after
# Ctrl-C before its process group is killed

# engines this process started and that still run: stopped when Nuke quits or a script closes
# (an engine in its own session outlives Nuke otherwise, holding the GPU for nothing)
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


@dataclass
class EngineCall:
    """One ``hdmatt matte`` call, as the Nuke side passes it to the engine process (argv)
    and farm step 1 to step 2 (:data:`JOB_FILE`): paths, a frame string, the device and the
    engine's :class:`~nuke_hdmatt.engine.settings.InferenceSettings` from the node's knobs.
    The engine's side of the same run is :class:`nuke_hdmatt.shot.plan.MatteJob`.

    ``plate``/``trimap``/``matte``/``output`` are sequence patterns (``name.####.exr``);
    ``trimap`` is ``None`` when ``matte`` (with ``band`` pixels of unknown) derives it.
    """

    plate: str
    output: str
    frames: str
    trimap: str | None = None
    matte: str | None = None
    band: int = 16
    trimap_channel: str = "A"
    plate_colorspace: str = ""
    ocio: str = ""
    cache: str = ""
    layer: str = "rgba"
    device: str = "auto"
    settings: InferenceSettings = field(default_factory=InferenceSettings)
    exposure: str = "fit"        # --exposure: fit, off or stops
    foreground: str = ""         # layer for the estimated foreground colour ("": none)
    premultiplied: bool = False  # also alpha x foreground into the file's R, G, B

    def per_view(self, view_names: list[str]) -> list[tuple[str, "EngineCall"]]:
        """One call per view, ``%V`` in its paths replaced by the view's name, where a path
        holds it (a stereo export; or an alpha sequence named by view, which Nuke's Read
        also expands in a script of one view); else ``[("", self)]``."""
        paths = {k: getattr(self, k) for k in ("plate", "trimap", "matte", "output")
                 if getattr(self, k)}
        if not any("%V" in p for p in paths.values()):
            return [("", self)]
        return [(view, replace(self, **{k: p.replace("%V", view) for k, p in paths.items()}))
                for view in view_names]

    def argv(self, exe: str, json_log: str | None = None, frames: str | None = None) -> list[str]:
        """The engine command line (``frames`` overrides ``self.frames``, e.g. per farm chunk)."""
        cmd = [exe, "matte", self.plate]
        if self.matte:
            cmd += ["--trimap-from-matte", self.matte, "--band", str(self.band)]
        else:
            assert self.trimap is not None  # no matte: the trimap is the input
            cmd += [self.trimap, "--trimap-channel", self.trimap_channel]
        # one word: argparse reads "-10-20" (a run-up before frame 0) as an option
        # the gizmo copies the alpha onto its own plate: no float plate in every alpha frame
        cmd += ["-o", self.output, f"--frames={frames or self.frames}", "--layer", self.layer,
                "--alpha-only"]
        if self.plate_colorspace:
            cmd += ["--plate-colorspace", self.plate_colorspace]
        if self.ocio:
            cmd += ["--ocio", self.ocio]
        if self.cache:
            cmd += ["--cache", self.cache]
        cmd += ["--device", self.device, *self.settings.argv(), f"--exposure={self.exposure}"]
        if self.foreground:
            cmd += ["--foreground", self.foreground]
        if self.premultiplied:
            cmd += ["--premultiplied"]
        if json_log:
            cmd += ["--json-log", json_log]
        return cmd

    def to_dict(self) -> dict:
        """Plain JSON values (the settings as a dict); :meth:`from_dict` reads them back."""
        return {**self.__dict__, "settings": self.settings.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> "EngineCall":
        return cls(**{**values, "settings": InferenceSettings(**values.get("settings", {}))})


@dataclass
class EngineResult:
    """What one engine run did: exit code, frames done (and which were cache hits), failures."""

    returncode: int
    done: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    output_tail: str = ""
    # the weights the engine reported using: {"path": ..., "sha256": ...}, or None
    weights: dict | None = None
    # what the engine warned about, once each: "frame 1003: trimap.1003.exr: ..."
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.failed

    def first_error(self) -> str:
        """One line for the user: the first failed frame, else the engine's last output line."""
        if self.failed:
            frame = min(self.failed)
            return f"frame {frame}: {self.failed[frame]}"
        lines = [ln for ln in self.output_tail.splitlines() if ln.strip()]
        return lines[-1] if lines else f"engine exited with code {self.returncode}"


MAX_WARNINGS = 20  # a long shot's repeated warnings: the first ones say what is wrong
_KINDS: dict[str | None, str] = {"frame_start": "start", "frame_done": "done", "frame_failed": "failed"}


class LogFollower:
    """Reads new JSON lines from a growing log file; tolerates a half-written last line."""

    def __init__(self, path: str, n_frames: int):
        self.path = path
        self.n_frames = max(1, n_frames)
        self._pos = 0
        self._partial = ""
        self.result = EngineResult(returncode=-1)
        self._patch = 0.0  # how much of the current frame is done
        self.message = "starting engine"

    def poll(self) -> list[str]:
        """Read what the engine appended; returns a progress message per event."""
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self._pos)
                chunk = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        messages = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and self._apply(ev):
                messages.append(self.message)
        return messages

    def _apply(self, ev: dict) -> bool:
        """Update from one event; True when it is worth showing."""
        kind = _KINDS.get(ev.get("event"), ev.get("event"))
        frame = ev.get("frame")
        r = self.result
        if kind == "progress" and ev.get("total"):
            # the frame's fraction where the engine says it (the matte, then the
            # foreground, each counting its own steps)
            part = ev.get("fraction")
            if not isinstance(part, (int, float)):
                part = float(ev.get("done", 0)) / float(ev["total"])
            self._patch = min(1.0, max(self._patch, float(part)))
            eta = ev.get("eta_s")
            # under a second left says nothing (the frame is writing, or done)
            left = (f", about {round(eta)} s left"
                    if isinstance(eta, (int, float)) and eta >= 1 else "")
            self.message = (f"frame {frame}: {ev.get('stage') or 'patches'} "
                            f"{ev.get('done')}/{ev['total']}{left}")
        elif kind == "start":
            self._patch = 0.0
            self.message = f"frame {frame}: starting"
        elif kind == "done" and frame is not None:
            if frame not in r.done:
                r.done.append(int(frame))
            if ev.get("cached"):
                r.cached.append(int(frame))
            if "weights_sha256" in ev:
                r.weights = {"path": str(ev.get("weights") or ""),
                             "sha256": str(ev["weights_sha256"])}
            self._patch = 0.0
            self.message = f"frame {frame}: {'cache hit' if frame in r.cached else 'done'}"
        elif kind == "failed" and frame is not None:
            r.failed[int(frame)] = str(ev.get("error") or "failed")
            self._patch = 0.0
            self.message = f"frame {frame}: failed"
        elif kind == "warning" and ev.get("text"):
            text = str(ev["text"]) if frame is None else f"frame {frame}: {ev['text']}"
            if text not in r.warnings and len(r.warnings) < MAX_WARNINGS:
                r.warnings.append(text)
            return False
        else:
            return False
        return True

    @property
    def fraction(self) -> float:
        finished = len(self.result.done) + len(self.result.failed)
        return min(1.0, (finished + self._patch) / self.n_frames)


def run_engine(argv: list[str], json_log: str, n_frames: int,
               progress: Callable[[int, str], None] | None = None,
               cancelled: Callable[[], bool] | None = None,
               poll_s: float = 0.1, env=None,
               frame_done: Callable[[int], None] | None = None) -> EngineResult:
    """Run the engine, report progress, stop it on cancel.

    Parameters
    ----------
    argv : list of str
        From :meth:`EngineCall.argv` with ``--json-log json_log``.
    progress : callable(percent: int, message: str), optional
    frame_done : callable(frame: int), optional
        Called as each frame's alpha lands (e.g. to refresh a viewer).
    cancelled : callable() -> bool, optional
        Polled every ``poll_s`` (callable from any thread); when True the engine's process
        group gets Ctrl-C (SIGINT; CTRL_BREAK_EVENT on Windows: its clean-stop path, finished
        frames kept, no temp files) and is killed if it has not stopped within
        ``STOP_GRACE_S``. After a kill, :func:`remove_partial_outputs` tidies the output
        folder.

    Raises
    ------
    Cancelled
        After the engine has stopped; its ``result`` holds the frames finished before.
    UsageError
        The engine executable cannot be started.
    """
    follower = LogFollower(json_log, n_frames)
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as out:
        # output to a file, not a pipe: a chatty engine must never block on a full pipe
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    **popen_options())
        except OSError as exc:  # a broken venv: bad shebang, missing interpreter
            raise UsageError(f"cannot start the engine ({exc.strerror}); re-run install.py",
                             path=argv[0])
        _below_normal(proc)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        was_cancelled = False
        try:
            while proc.poll() is None:
                _report(follower, progress, frame_done)
                if cancelled and cancelled():
                    was_cancelled = True
                    _stop(proc)
                    break
                time.sleep(poll_s)
        except BaseException:
            _stop(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        _report(follower, progress, frame_done)
        out.seek(0)
        tail = out.read()[-4000:]
    result = follower.result
    result.returncode = proc.returncode
    result.output_tail = tail
    if was_cancelled:
        stop = Cancelled(f"cancelled after {len(result.done)} of {n_frames} frames")
        stop.result = result  # type: ignore[attr-defined]  # the frames finished before it
        raise stop
    if progress:
        progress(100, "engine finished")
    return result


def _report(follower: LogFollower, progress, frame_done) -> None:
    # one call per event, so no frame's verdict is lost between two polls
    n_done = len(follower.result.done)
    for message in follower.poll():
        if progress:
            progress(int(100 * follower.fraction), message)
    if frame_done:
        for frame in follower.result.done[n_done:]:
            frame_done(frame)


def popen_options(os_name: str | None = None) -> dict:
    """The engine runs in its own process group: Nuke's signals stay away from it, and Cancel
    reaches the engine and whatever it started. POSIX: a new session (group id = its pid);
    Windows: ``CREATE_NEW_PROCESS_GROUP``, without which CTRL_BREAK_EVENT cannot be sent, and
    below-normal priority (:func:`_below_normal` on POSIX)."""
    if (os_name or os.name) == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
                | getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0x4000)}
    return {"start_new_session": True}


def _below_normal(proc: subprocess.Popen) -> None:
    """POSIX: the engine at nice :data:`NICENESS`, so its threads (one per core) yield to
    Nuke's: the viewer and the UI stay responsive while a Generate runs. Set as the process
    starts, before the engine's thread pools exist (importing torch alone takes a second):
    the threads it creates later inherit it. Best effort: a higher niceness is kept."""
    if os.name == "nt" or not hasattr(os, "setpriority"):
        return
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, proc.pid, max(own, NICENESS))
    except OSError:
        pass  # already gone, or not ours to change


def _signal_group(proc: subprocess.Popen, sig) -> None:
    try:
        if os.name == "nt":
            proc.send_signal(sig)
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # already gone


def _stop(proc: subprocess.Popen, grace_s: float | None = None) -> None:
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGINT if os.name != "nt" else signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]  # Windows only
    try:
        proc.wait(timeout=STOP_GRACE_S if grace_s is None else grace_s)
    except subprocess.TimeoutExpired:
        if os.name == "nt":
            proc.kill()
        else:
            _signal_group(proc, signal.SIGKILL)
        proc.wait()
    if os.name != "nt":  # helpers the engine started may outlive it: the group goes too
        _signal_group(proc, signal.SIGKILL)


@atexit.register
def stop_all_engines() -> int:
    """Stop every engine this process started that still runs, as Cancel does (Ctrl-C, then
    a kill after :data:`STOP_GRACE_S`); returns how many. Runs when Python exits (Nuke
    quitting) and from the node's script-close callback; callable from any thread."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _stop(proc)
    return len(procs)


def remove_partial_outputs(pattern: str, frames) -> list[str]:
    """Delete temp files a killed engine left beside its outputs of ``frames``
    (:func:`~nuke_hdmatt.atomic.atomic_path` names them ``.<stem>.<random><suffix>``);
    returns what went. Only those frames': the farm or another node may be writing other
    frames of the folder now."""
    seq = FrameSequence(pattern)
    folder = os.path.dirname(pattern) or "."
    prefixes = tuple(f".{os.path.splitext(os.path.basename(seq.path(f)))[0]}." for f in frames)
    gone: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return gone
    for name in names:
        if prefixes and name.startswith(prefixes):
            try:
                os.remove(os.path.join(folder, name))
                gone.append(name)
            except OSError:
                pass
    return gone

