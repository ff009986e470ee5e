"""The HDMatt gizmo's Python: buttons, knob callbacks, Generate, status and label.

The inputs are rendered for the engine by :mod:`.export`; what the knobs ask of the engine
(the engine call, the alpha sequence) is :mod:`.knobs`'s; what an alpha was generated from
(for the stale check) is :mod:`.generated`'s. These, with ``prepass``, are the modules that
import ``nuke``; none imports torch: alphas come from the engine process
(:mod:`nuke_hdmatt.nuke.engine_call`). Nothing here is needed to
render: the gizmo's Read, its range and its output channel are plain knobs and expressions
(see ``gizmos/HDMatt.gizmo``), so a render node without ``nuke_hdmatt`` importable renders the
same pixels.

Inside the gizmo: Input nodes ``plate`` (0), ``trimap`` (1), ``matte`` (2); Read ``alpha_read``
(its file knob, linked to the node's *alpha sequence*, defaults to a TCL expression of the
script and node names; its range follows the generated frames in the GUI and is open in
renders; a missing frame is black in the GUI and an error in renders, by ``$gui``); Copy
``copy_alpha`` (A: rgba.alpha of the Read, B: the plate, bbox B), whose ``to0`` knob is the
node's *output channel* (a Link_Knob). Then Copy ``copy_fg`` (the Read's fg.red/green/blue into
the fg layer) and Copy ``copy_premult`` (the Read's rgb, alpha x foreground, into rgb), each
enabled by the knob ``foreground_output`` through an expression on its ``disable`` knob: a
gizmo's insides are rebuilt from the ``.gizmo`` file when a script loads, so only the node's
own knobs (and expressions reading them) survive a save, and renders need no Python.

Threads: Generate exports the inputs on the main thread (one ``nuke.executeMultiple``, with
Nuke's own render progress), then in the GUI runs the engine from a worker thread and
returns. The worker touches Nuke only through ``nuke.executeInMainThread`` /
``executeInMainThreadWithResult``, except for its ``nuke.ProgressTask``, which Nuke lets
worker threads drive. In terminal mode (``nuke -t``) there is no event loop to hand calls
to, so the same steps run in the calling thread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from typing import Any

import nuke

from ..engine_env import engine_executable
from ..errors import Cancelled, HDMattError, UsageError
from ..sequence import FrameSequence, format_frames, frames_on_disk, parse_frames
from .engine_call import EngineCall, EngineResult, remove_partial_outputs, run_engine, stop_all_engines
from .export import INPUTS, connected, export_inputs, new_work_folder, views
from .generated import FILES_VERSION, UI_STAT_AGE_S, digest, graph_digests, weights_changed
from .knobs import (
    STALE_KNOBS,
    alpha_pattern,
    alpha_sequence,
    alpha_sequences,
    input_warnings,
    knob_text,
    matte_job,
    plate_colour,
)

__all__ = ["on_create", "on_destroy", "on_script_close", "knob_changed", "update_ui",
           "generate", "generate_current", "clear_cache", "update_status", "export_inputs",
           "running", "stale_reasons", "check_alpha_path"]

# EngineCall fields that are paths or where-to-run choices, not what decides the alpha
_JOB_NOT_SETTINGS = ("plate", "trimap", "matte", "output", "frames", "cache", "device")

# engine runs in progress (GUI mode), found by their node: a node renamed (or moved into a
# group) while it generates keeps its run, and a new node given a deleted one's name has none
_RUNS: list["_Run"] = []
_RUNS_LOCK = threading.Lock()
# the last Generate's error or cancel, per node (found as runs are), for this session: the
# status line is rebuilt from disk at every idle update, which dropped them at once
_NOTES: list[tuple[Any, str]] = []


def _note_of(node) -> str:
    for other, note in list(_NOTES):
        try:
            if other == node:
                return note
        except ValueError:          # a deleted node's wrapper raises on use
            _NOTES.remove((other, note))
    return ""


def _keep_note(node, note: str) -> None:
    _drop_note(node)
    if note:
        _NOTES.append((node, note))


def _drop_note(node) -> None:
    for other, note in list(_NOTES):
        try:
            if other == node:
                _NOTES.remove((other, note))
        except ValueError:
            _NOTES.remove((other, note))


def _node(node=None):
    return node if node is not None else nuke.thisNode()


def _on_disk(node) -> set[int]:
    """Frames whose alpha is on disk in every view (none for a relative, unsaved path)."""
    seqs = alpha_sequences(node)
    if not os.path.isabs(seqs[0].pattern):
        return set()
    return set.intersection(*(set(frames_on_disk(seq)) for seq in seqs))


def _hdmatt_nodes():
    return [n for n in nuke.allNodes(group=nuke.root(), recurseGroups=True)
            if n.knob("alpha_file") is not None and n.node("alpha_read") is not None]


def check_alpha_path(node) -> FrameSequence:
    """The alpha sequence, refused when it cannot be shared or collides with another node's.

    Raises
    ------
    UsageError
        Unsaved script with the default (relative) path, another HDMatt node's alpha
        sequence (a copied node with an explicit path), or a stereo script's path
        without ``%V``.
    """
    seq = alpha_sequence(node)
    if not os.path.isabs(seq.pattern):
        raise UsageError(f"{node.name()}: save the script first: the alpha sequence goes beside "
                         "it (or set alpha sequence to an absolute path)")
    if len(views()) > 1 and "%V" not in alpha_pattern(node):
        raise UsageError(f"{node.name()}.alpha_file: a stereo script needs %V in the alpha "
                         "sequence (e.g. .../alpha.%V.####.exr), one alpha per view")
    other = _shared_with(node, seq)
    if other is not None:
        raise UsageError(f"{node.name()}.alpha_file: {seq.pattern} is also {other}'s alpha "
                         "sequence; give this node its own")
    return seq


def _shared_with(node, seq: FrameSequence | None = None) -> str | None:
    """The full name of another HDMatt node whose alpha sequence names the same files
    (``a.####.exr`` and ``a.%04d.exr``, ``dir//a`` and ``dir/a`` alike), else None."""
    def files(s: FrameSequence) -> tuple:
        return tuple(os.path.normcase(os.path.normpath(s.path(f))) for f in (1, 1001))
    try:
        mine = files(seq or alpha_sequence(node))
    except HDMattError:
        return None
    for other in _hdmatt_nodes():
        try:
            if other == node:   # Nuke's nodes compare by the node they wrap
                continue
            if files(alpha_sequence(other)) == mine:
                return other.fullName()
        except (HDMattError, ValueError):
            continue  # the other node's own problem, or a deleted one
    return None


# ---------------------------------------------------------------- callbacks


def on_create() -> None:
    """``onCreate``: runs for new nodes and for every node of a loading script (also ``-x``).

    Only the status and label: everything a render needs is in the gizmo itself. In a render
    (terminal mode) a stale alpha is reported on stderr.
    """
    node = nuke.thisNode()
    update_status(node)
    apply_detail_auto(node)
    if not nuke.GUI:
        try:
            reasons = stale_reasons(node)
        except HDMattError as exc:
            reasons = []
            print(f"HDMatt: warning: {node.fullName()}: cannot tell whether the alpha is stale "
                  f"({exc.one_line()}); renders use it as it is", file=sys.stderr)
        if reasons:
            print(f"HDMatt: warning: {node.fullName()}: alpha is stale ({', '.join(reasons)} "
                  "changed since Generate); renders use it as it is", file=sys.stderr)
        try:
            failed = sorted(_still_failed(node, _on_disk(node)))
        except HDMattError:
            failed = []
        if failed:
            print(f"HDMatt: warning: {node.fullName()}: frames {format_frames(failed)} failed at "
                  "the last Generate; renders use what is on disk for them (an earlier run's "
                  "alpha, or an error where there is none)", file=sys.stderr)


def knob_changed() -> None:
    node, knob = nuke.thisNode(), nuke.thisKnob()
    if knob is not None and knob.name() in STALE_KNOBS:
        update_status(node)
        if knob.name() == "detail_auto":
            apply_detail_auto(node)


def apply_detail_auto(node) -> None:
    """The detail slider is greyed out while predict detail decides the step."""
    slider = node.knob("detail")
    if slider is not None and node.knob("detail_auto") is not None:
        slider.setEnabled(not node["detail_auto"].value())


def on_destroy() -> None:
    """``nuke.addOnDestroy`` (menu.py): a deleted node's engine run stops (within a second)."""
    run = running(nuke.thisNode())
    if run is not None:
        run.stop.set()


def on_script_close() -> None:
    """``nuke.addOnScriptClose`` (menu.py): every engine run stops with its script, now: the
    engine runs in a session of its own and would outlive Nuke, holding the GPU."""
    with _RUNS_LOCK:
        runs = list(_RUNS)
    for run in runs:
        run.stop.set()
    stop_all_engines()
    # the exported inputs go now: Nuke may be quitting, and its worker threads with it
    for run in runs:
        shutil.rmtree(run.work, ignore_errors=True)


def update_ui() -> None:
    """``nuke.addUpdateUI`` callback (menu.py): keeps status and label current after any
    change to the script, upstream edits included."""
    node = nuke.thisNode()
    if running(node) is None:
        update_status(node, max_age=UI_STAT_AGE_S)


# ---------------------------------------------------------------- frames


def requested_frames(node, frames: str | None = None) -> list[int]:
    text = frames or knob_text(node, "frames")
    if not text:
        root = nuke.root()
        text = f"{int(root['first_frame'].value())}-{int(root['last_frame'].value())}"
    try:
        return parse_frames(text)
    except HDMattError as exc:
        raise UsageError(f"{node.name()}.frames: {exc.message.replace('--frames: ', '')}")


# ---------------------------------------------------------------- what was generated


def fingerprint(node, frames: list[int], job: EngineCall | None = None,
                max_age: float = 0.0, follow_time: bool = True) -> dict:
    """What decides the alpha, as digests: the settings (engine knobs, colour), each connected
    input's upstream graph, and under ``"files"`` each frame's files of each input
    (``{"1001": {"plate": ..., "trimap": ...}}``; ``follow_time``: see
    :func:`.generated.graph_digests`)."""
    if job is None:
        job = matte_job(node, {"plate": "", "trimap": "" if node.input(1) else None,
                               "matte": None if node.input(1) else ""}, frames)
    settings = {k: v for k, v in job.to_dict().items() if k not in _JOB_NOT_SETTINGS}
    settings["inputs"] = [name for i, (name, _) in enumerate(INPUTS) if node.input(i) is not None]
    out: dict = {"settings": digest(settings)}
    files: dict[str, dict] = {str(f): {} for f in frames}
    for i, (name, _) in enumerate(INPUTS):
        if node.input(i) is not None:
            out[name], per_frame = graph_digests(node.input(i), frames, max_age, follow_time)
            for f, d in per_frame.items():
                files[str(f)][name] = d
    out["files"] = files
    return out


def _record(node) -> dict | None:
    knob = node.knob("generated")
    if knob is None or not knob.value():
        return None
    try:
        return json.loads(knob.value())
    except ValueError:
        return None


def stale_reasons(node, max_age: float = 0.0) -> list[str]:
    """What changed since the last Generate (``["plate input", "settings", "weights"]``);
    [] if nothing or never generated. ``max_age``: how old a Read file's stat may be."""
    rec = _record(node)
    if not rec:
        return []
    try:
        now = fingerprint(node, parse_frames(rec["frames"]), max_age=max_age,
                          follow_time=rec.get("files_version") == FILES_VERSION)
    except (HDMattError, KeyError, ValueError):
        return ["settings"]
    except RuntimeError as exc:  # Nuke's, for a knob's bad TCL ($env(SHOW_CACHE) unset)
        raise UsageError(f"{node.name()}: {_unexpected(exc)}") from None
    reasons = _changed(rec.get("digests") or {}, now, rec.get("files") or {}, now["files"])
    if weights_changed(rec.get("weights")):
        reasons.append("weights")
    outdated = rec.get("outdated") or {}
    if outdated:
        try:
            have = _on_disk(node)
        except HDMattError:
            have = set()
        for f, why in outdated.items():
            if int(f) in have:
                reasons += [r for r in why if r not in reasons]
    return reasons


# ---------------------------------------------------------------- Generate


class _Run:
    """One engine run: the worker thread and how it reaches the main thread."""

    exe: str  # the engine executable, set by the caller
    jobs: list  # (view, EngineCall) per view, set by the caller
    notes: list  # warnings about the inputs, shown with the engine's, set by the caller

    def __init__(self, node, frames, job, work, digests, threaded: bool):
        self.node, self.frames, self.job, self.work, self.digests = node, frames, job, work, digests
        # read on the main thread: the worker may not ask the node
        self.name, self.key = node.name(), node.fullName()
        self.threaded = threaded
        self.thread: threading.Thread | None = None
        self.ok = False
        self.percent = 0
        self.stop = threading.Event()  # the node deleted or its script closed: stop, no verdict

    def later(self, fn, *args) -> None:
        if self.threaded:
            nuke.executeInMainThread(self._unless_stopped, (fn, *args))
        else:
            fn(*args)

    def _unless_stopped(self, fn, *args):
        # queued before the node was deleted (or its script closed), run after: not at all
        return None if self.stop.is_set() else fn(*args)

    def now(self, fn, *args):
        """``fn(*args)`` on the main thread, its result; None when the node or its script
        went while the call waited for the main thread."""
        if not self.threaded:
            return fn(*args)
        return nuke.executeInMainThreadWithResult(self._unless_stopped, (fn, *args))


def running(node):
    """The node's engine run in progress (``.thread``), or None."""
    with _RUNS_LOCK:
        runs = list(_RUNS)
    for run in runs:
        try:
            if run.node == node:  # Nuke's nodes compare by the node they wrap
                return run
        except ValueError:  # a deleted node's wrapper raises on use
            continue
    return None


def generate(node=None, frames: str | None = None) -> bool:
    """Button *Generate*: make the alpha for the node's frame range.

    Returns True when all frames succeeded (terminal mode) or the engine started (GUI: it
    runs in a worker thread; status and label follow it).
    """
    node = _node(node)
    try:
        if nuke.executing():
            raise UsageError(f"{node.name()}: cannot generate during a render; generate first "
                             "or use `hdmatt farm nuke`")
        if running(node) is not None:
            # said, not kept: the run going on decides the node's state
            report(node, f"{node.name()}: already generating; cancel that run first", keep=False)
            return False
        _drop_note(node)
        run = _prepare(node, requested_frames(node, frames))
    except Cancelled as exc:
        _keep_note(node, f"cancelled ({exc})")
        update_status(node)
        return False
    except HDMattError as exc:
        report(node, exc.one_line())
        return False
    except Exception as exc:  # a bad TCL expression in a knob, a full temp folder: said here
        report(node, _unexpected(exc))
        return False
    if not run.threaded:
        _engine_run(run)
        return run.ok
    with _RUNS_LOCK:
        _RUNS.append(run)
    run.thread = threading.Thread(target=_engine_run, args=(run,), daemon=True,
                                  name=f"HDMatt {run.key}")
    run.thread.start()
    return True


def _unexpected(exc: BaseException) -> str:
    """One line for an error that is no HDMattError (Nuke's RuntimeError, an OSError)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {text}"


def generate_current(node=None) -> bool:
    """Button *Generate current frame*."""
    return generate(node, str(nuke.frame()))


def _prepare(node, frames: list[int]) -> _Run:
    """Main thread: everything that can fail fast, then the one export render."""
    connected(node)
    check_alpha_path(node)
    colour = plate_colour(node)  # before rendering: a bad colour setting fails at once
    exe = engine_executable()
    placeholder = {"plate": "", "trimap": "" if node.input(1) else None,
                   "matte": None if node.input(1) else ""}
    digests = fingerprint(node, frames, matte_job(node, placeholder, frames, colour))
    work = new_work_folder()
    try:
        paths = export_inputs(node, frames, work, plate_space=colour.colorspace)
        job = matte_job(node, paths, frames, colour)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    run = _Run(node, frames, job, work, digests, threaded=bool(nuke.GUI))
    run.exe = exe
    run.notes = input_warnings(node)
    run.jobs = job.per_view(views())  # here: views() is a Nuke call, the worker may not make it
    return run


def _merged(results: list[EngineResult], n_views: int) -> EngineResult | None:
    """One verdict for a stereo run's per-view results: a frame is done when every view is."""
    if not results:
        return None
    if n_views == 1:
        return results[0]
    bad = next((r for r in results if not r.ok), None)
    done = set(results[0].done)
    for r in results[1:]:
        done &= set(r.done)
    return EngineResult(
        returncode=bad.returncode if bad else 0,
        done=sorted(done) if len(results) == n_views else [],
        cached=sorted(set.intersection(*(set(r.cached) for r in results))),
        failed=dict(bad.failed) if bad else {},
        output_tail=bad.output_tail if bad else results[-1].output_tail,
        weights=next((r.weights for r in results if r.weights), None),
        warnings=list(dict.fromkeys(w for r in results for w in r.warnings)))


def _engine_run(run: _Run) -> None:
    """Worker thread (GUI) or the caller (terminal): the engine, then the verdict on the
    main thread. Nuke is reached only through ``run.later`` / ``run.now``."""
    node, frames = run.node, run.frames
    outcome: str | HDMattError | None = None
    results: list = []
    task: Any = None  # a nuke.ProgressTask once made (in the try: a failure there is reported)
    jobs = run.jobs
    try:
        task = nuke.ProgressTask(f"HDMatt {run.name}")
        for view, job in jobs:
            log = os.path.join(run.work, f"engine{'_' + view if view else ''}.jsonl")

            def progress(percent, message, view=view):
                task.setProgress(percent)
                task.setMessage(f"{view}: {message}" if view else message)
                if percent != run.percent:
                    run.percent = percent
                    run.later(_show_running, node, percent)

            result = None
            try:
                result = run_engine(job.argv(run.exe, log), log, len(frames), progress,
                                    lambda: task.isCancelled() or run.stop.is_set(),
                                    frame_done=lambda frame: run.later(_reload, node))
            finally:
                if result is None or not result.ok:
                    remove_partial_outputs(job.output, frames)
            results.append(result)
            if not result.ok:
                break
    except Cancelled as exc:
        outcome = f"cancelled ({exc})"
        if getattr(exc, "result", None) is not None:  # its finished frames are kept and recorded
            results.append(exc.result)  # type: ignore[attr-defined]
    except HDMattError as exc:
        outcome = exc
    except Exception as exc:  # never die silently in a worker thread
        outcome = HDMattError(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        task = None  # the last reference: Nuke closes the progress bar when the task is deleted
        shutil.rmtree(run.work, ignore_errors=True)
    result = _merged(results, len(jobs))
    try:
        if run.stop.is_set():  # the node or its script is gone: nothing left to tell
            return
        run.ok = bool(run.now(_finish, run, result, outcome))
    except Exception as exc:  # e.g. the node was deleted or the script closed meanwhile
        print(f"HDMatt: {run.key}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with _RUNS_LOCK:
            if run in _RUNS:
                _RUNS.remove(run)


def _set(node, knob: str, value) -> None:
    # only real changes: setting a knob is itself a change that re-runs updateUI callbacks
    if node[knob].value() != value:
        node[knob].setValue(value)


def _show_running(node, percent: int) -> None:
    _set(node, "label", f"running {percent}%")


def _finish(run: _Run, result, outcome) -> bool:
    """Main thread: record what was generated, status, label, the user's report (also of
    an error here: Nuke's executeInMainThreadWithResult would only print it)."""
    try:
        return _finish_run(run, result, outcome)
    except Exception as exc:
        report(run.node, _unexpected(exc))
        return False


def _finish_run(run: _Run, result, outcome) -> bool:
    node, frames = run.node, run.frames
    _reload(node)  # also after a cancel: the finished frames are on disk
    done = sorted(result.done) if result is not None else []
    if done:
        _remember(node, done, run.digests, result.weights)
    if isinstance(outcome, str):  # cancelled
        _keep_note(node, outcome)
        update_status(node, frames)
        return False
    if isinstance(outcome, HDMattError):
        report(node, outcome.one_line())
        return False
    _show_warnings(node, run.notes + [w.replace(run.work + os.sep, "") for w in result.warnings])
    failed = dict(result.failed)
    if result.returncode != 0 and not failed:
        # the engine died without a per-frame verdict: every frame it did not finish failed
        failed = {f: result.first_error() for f in frames if f not in result.done}
    _remember_failed(node, frames, failed)
    update_status(node, frames)
    if failed:
        # not kept: the failed frames are (failed_frames), and the status says them
        report(node, result.first_error() if result.failed else next(iter(failed.values())),
               keep=False)
        return False
    return True


def _show_warnings(node, warnings: list[str]) -> None:
    """The engine's warnings of this Generate: kept on the node (status line, label) until
    the next one, and each in Nuke's error console (stderr in a terminal session)."""
    if "engine_warnings" in node.knobs():  # nodes saved before the knob existed
        node["engine_warnings"].setValue("\n".join(warnings))
    for text in warnings:
        nuke.warning(f"HDMatt: {node.name()}: {text}")


def _remember(node, done: list[int], prints: dict, weights: dict | None = None) -> None:
    """The hidden ``generated`` record: frames, the settings and graph digests, each frame's
    input files, and the weights the engine reported (``{"path", "sha256"}``). Frames of an
    earlier Generate with the same settings, graphs and weights stay in it; those of one
    with others are ``outdated``, with what differed, until a Generate makes them again
    (a Generate of frame 1 after a change left frame 2's old alpha looking current)."""
    rec = _record(node) or {}
    digests = {k: v for k, v in prints.items() if k != "files"}
    files = {str(f): prints["files"].get(str(f), {}) for f in done}
    outdated = dict(rec.get("outdated") or {})
    if "files" in rec:
        if rec.get("digests") == digests and rec.get("weights") == weights:
            files = {**_files_now_meant(node, rec), **files}
        else:
            changed = _changed(rec.get("digests") or {}, digests)
            if rec.get("weights") != weights:
                changed.append("weights")
            for f in rec["files"]:
                outdated[f] = sorted(set(outdated.get(f, [])) | set(changed))
    outdated = {f: r for f, r in outdated.items() if f not in files}
    if node.knob("generated") is not None:
        frames = sorted(int(f) for f in files)
        node["generated"].setValue(json.dumps({"frames": format_frames(frames),
                                               "digests": digests, "files": files,
                                               "weights": weights, "outdated": outdated,
                                               "files_version": FILES_VERSION},
                                              sort_keys=True))
    _set_range(node)


def _files_now_meant(node, rec: dict) -> dict:
    """A record's per-frame file digests in today's meaning (:data:`FILES_VERSION`): those of
    an older record whose files have not changed since are taken anew, the others kept (they
    differ, so they stay stale, as they should)."""
    if rec.get("files_version") == FILES_VERSION or not rec.get("files"):
        return rec.get("files") or {}
    frames = [int(f) for f in rec["files"]]
    try:
        then = fingerprint(node, frames, follow_time=False)["files"]
        now = fingerprint(node, frames)["files"]
    except (HDMattError, KeyError, ValueError, RuntimeError):  # RuntimeError: a knob's TCL
        return rec["files"]
    return {f: now[f] if then.get(f) == d else d for f, d in rec["files"].items()}


def _changed(then: dict, now: dict, files_then: dict | None = None,
             files_now: dict | None = None) -> list[str]:
    """Stale reasons (``"plate input"``, ``"settings"``) between two sets of digests and,
    given, between each recorded frame's input files and those it would read now."""
    files_now = files_now or {}
    out = [f"{name} input" for name, _ in INPUTS
           if then.get(name) != now.get(name)
           or any(files_now.get(f, {}).get(name) != d.get(name)
                  for f, d in (files_then or {}).items())]
    if then.get("settings") != now.get("settings"):
        out.append("settings")
    return out


def _remember_failed(node, frames: list[int], failed) -> None:
    """The ``failed_frames`` knob after a run of ``frames``: earlier failures of frames this
    run did not try, and this run's. A failed frame keeps the alpha an earlier run left (a
    failed run never clobbers an output), so each failure notes that file's modification
    time: the frame counts as failed until something writes it again."""
    then = _failures(node)
    now = {f: t for f, t in then.items() if f not in frames}
    for f in failed:
        now[f] = _mtime(node, f)
    node["failed_frames"].setValue(json.dumps({str(f): now[f] for f in sorted(now)})
                                   if now else "")


def _failures(node) -> dict[int, list[int] | None]:
    """Failed frame -> modification time (ns) of the alpha on disk when it failed (None: no
    file). Older nodes hold a frame list (``"2,5-7"``): no file times."""
    text = node["failed_frames"].value().strip()
    if not text:
        return {}
    try:
        return {int(f): t for f, t in json.loads(text).items()}
    except (ValueError, AttributeError):
        try:
            return {f: None for f in parse_frames(text)}
        except HDMattError:
            return {}


def _still_failed(node, have: set[int]) -> set[int]:
    """Failed frames whose alpha on disk (in ``have``) is still the one they failed beside:
    a frame something wrote since (the farm, a later Generate) is no longer failed."""
    return {f for f, t in _failures(node).items()
            if f not in have or t is None or _mtime(node, f) == t}


def _mtime(node, frame: int) -> list[int] | None:
    """Modification times (ns) of the frame's alpha in each view; None if one is missing."""
    try:
        return [os.stat(seq.path(frame)).st_mtime_ns for seq in alpha_sequences(node)]
    except (OSError, HDMattError):
        return None


def _set_range(node, on_disk=None) -> None:
    """The Read's range (GUI) follows the frames on disk: handles, custom ranges and frames
    the farm made too."""
    if node.knob("range_first") is None:
        return
    on_disk = _on_disk(node) if on_disk is None else on_disk
    if on_disk:
        for knob, value in (("range_first", min(on_disk)), ("range_last", max(on_disk))):
            if node[knob].value() != value:
                node[knob].setValue(value)


def _reload(node) -> None:
    """The inner Read reads the frames on disk again, over their range: during a first
    Generate each frame shows as it lands (its range was 0-0 until the run ended)."""
    _set_range(node)
    node.node("alpha_read")["reload"].execute()


# ---------------------------------------------------------------- status


def update_status(node, frames: list[int] | None = None, note: str = "",
                  max_age: float = 0.0) -> str:
    """Status line and label: frames cached / missing / failed, stale, running, and the last
    Generate's error or cancel (``note`` else the node's kept one). ``max_age``: how old the
    upstream Read files' stats may be (the stale check)."""
    note = note or _note_of(node)
    try:
        frames = frames or requested_frames(node)
        have = _on_disk(node)
    except HDMattError as exc:
        _set(node, "status", exc.one_line())
        return exc.one_line()
    except RuntimeError as exc:  # Nuke's, for a knob's bad TCL expression: every idle update
        _set(node, "status", f"error: {_unexpected(exc)}")
        return _unexpected(exc)
    _set_range(node, sorted(have))
    if have:
        # its frames may be another node's (two nodes of one name in different Groups get
        # one default path): never shown as this node's matte without a word
        other = _shared_with(node)
        if other is not None:
            line = (f"error: {node.name()}.alpha_file is also {other}'s alpha sequence; "
                    "give this node its own")
            _set(node, "status", line)
            _set(node, "label", "shared alpha")
            return line
    failed = _still_failed(node, have) & set(frames)
    in_range = (have & set(frames)) - failed
    older = sorted(failed & have)
    missing = set(frames) - in_range - failed
    text = (f"{len(in_range)} cached, {len(missing)} missing, {len(failed)} failed "
            f"(frames {format_frames(frames)})")
    if failed:
        text += f"; failed: {format_frames(sorted(failed))}"
    if older:
        text += f" (an earlier run's alpha is on disk for {format_frames(older)}: renders use it)"
    try:
        stale = stale_reasons(node, max_age) if have else []
    except HDMattError as exc:
        _set(node, "status", f"error: {exc.one_line()}")
        return exc.one_line()
    if stale:
        text += f"; stale: {', '.join(stale)} changed since Generate"
    warned = node["engine_warnings"].value().splitlines() if "engine_warnings" in node.knobs() else []
    if warned:
        text += f"; {len(warned)} warning(s) from the last Generate, first: {warned[0]}"
    if note.startswith("error: "):
        text = f"{note}; {text}"
    elif note:
        text += f"; {note}"
    if missing:
        text += "; missing frames are black in the viewer and an error in renders"
    _set(node, "status", text)
    label = format_frames(sorted(have)) if have else "not generated"
    if stale:
        label += " stale"
    if failed:
        label += f" failed {format_frames(sorted(failed))}"
    elif warned:
        label += " warnings"
    if note.startswith("cancelled"):
        label += " cancelled"
    elif note.startswith("error: ") and not failed:
        label += " failed"
    _set(node, "label", label)
    return text


def report(node, message: str, keep: bool = True) -> None:
    """A failure: on the node's status line and label (``keep``: also after the next idle
    update, until a Generate starts), and in a dialog (GUI) or on stderr (terminal)."""
    line = message if message.startswith(node.name()) else f"{node.name()}: {message}"
    if keep:
        _keep_note(node, f"error: {message}")
    node["status"].setValue(f"error: {message}")
    node["label"].setValue("failed")
    if nuke.GUI:
        nuke.message(f"HDMatt failed\n{line}")
    else:
        print(f"HDMatt: {line}", file=sys.stderr)


def clear_cache(node=None) -> int:
    """Button *Clear cache*: delete this node's alpha frames, and the shared per-frame cache
    folder's entries when the cache knob names one. Returns how many alpha files went."""
    node = _node(node)
    if running(node) is not None:
        report(node, "generating: cancel the run before clearing its cache")
        return 0
    try:
        seqs = alpha_sequences(node)
    except HDMattError as exc:
        report(node, exc.one_line())
        return 0
    files = [seq.path(f) for seq in seqs if os.path.isabs(seq.pattern)
             for f in frames_on_disk(seq)]
    cache = knob_text(node, "cache")
    if nuke.GUI and not nuke.ask(f"Delete {len(files)} alpha frames of {node.name()}"
                                 + (f" and every entry in {cache}?" if cache else "?")):
        return 0
    kept = []
    for path in files:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # a frame another user wrote, a read-only share
            kept.append(f"{os.path.basename(path)}: {exc.strerror or exc}")
    if kept:
        report(node, f"could not delete {len(kept)} of {len(files)} alpha frames "
                     f"({kept[0]}{', ...' if len(kept) > 1 else ''})")
    if cache:
        try:
            argv = [engine_executable(), "cache", "clear", "--cache", cache]
        except HDMattError as exc:
            report(node, f"could not clear {cache}: {exc.one_line()}")
        else:
            if nuke.GUI:  # a big cache on a file server: minutes Nuke's UI must not wait
                threading.Thread(target=_clear_shared_cache, daemon=True,
                                 name=f"HDMatt clear {node.fullName()}",
                                 args=(node, argv, cache, nuke.executeInMainThread)).start()
            else:
                _clear_shared_cache(node, argv, cache, lambda fn, args: fn(*args))
    node["failed_frames"].setValue("")
    if node.knob("generated") is not None:
        node["generated"].setValue("")
    _reload(node)
    if not kept:
        update_status(node)
    return len(files) - len(kept)


def _clear_shared_cache(node, argv: list[str], cache: str, on_main) -> None:
    """The engine's ``cache clear`` (a worker thread in the GUI); a failure reaches the node
    through ``on_main(fn, args)``, the main thread."""
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        on_main(report, (node, f"could not clear {cache}: {exc}"))
