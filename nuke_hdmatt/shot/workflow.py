"""Run a shot: what ``hdmatt matte``, ``hdmatt demo`` and a farm chunk have in common.

Below the command line and above the engine: given a :class:`~nuke_hdmatt.shot.plan.MatteJob`
(what to matte) and :class:`RunSettings` (how: engine options, cache, reporting), plan the
frames, check them before torch loads, load the engine once, matte, and give the exit code.
Parsing command lines is the CLI's business; nothing here reads ``argparse`` namespaces or
imports :mod:`nuke_hdmatt.cli`, so the demo and the farm call this without going upward.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field

from .. import ENGINE_VERSION
from ..errors import (
    EXIT_FAILED_FRAMES,
    EXIT_OK,
    ONCE_A_SHOT,
    HDMattError,
    UsageError,
    exit_for_signal,
)

__all__ = ["RunSettings", "MAX_THREADS", "check_threads", "run_matte", "run_shot",
           "check_engine_files", "load_engine",
           "open_cache", "setup_logging"]

log = logging.getLogger(__name__)

# More than any machine has cores: tens of thousands of threads exhaust the process's
# thread limit inside OpenImageIO and torch (an error, then a crash). A fixed number, not a
# multiple of this machine's cores: a farm template is checked here and run elsewhere.
MAX_THREADS = 1024

def check_threads(threads: int | None) -> None:
    """``--threads``: None (torch's default) or 1 to :data:`MAX_THREADS`."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be 1 to {MAX_THREADS}, got {threads}")


@dataclass(frozen=True)
class RunSettings:
    """How to run a shot, beside the job itself.

    ``engine`` holds the :meth:`Engine.load <nuke_hdmatt.engine.Engine.load>` keyword
    arguments: ``weights`` and ``device`` when given, and ``settings``
    (:class:`~nuke_hdmatt.engine.settings.InferenceSettings`), whose ``prior`` may be
    ``"none"``: weights that take no prior (checked once they are loaded).
    """

    engine: dict = field(default_factory=dict)
    cache: str | None = None      # folder; None: $HDMATT_CACHE, else ~/.cache/hdmatt
    no_cache: bool = False
    quiet: bool = False
    json_log: str | None = None   # JSON-lines progress events appended here
    threads: int | None = None    # CPU threads for torch and OpenImageIO; None: their default


def _one_line(text) -> str:
    return " ".join(str(text).split())


class _OneLine(logging.Formatter):
    """``hdmatt: warning: message``, the form of the run's own warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        return f"hdmatt: {record.levelname.lower()}: {_one_line(record.getMessage())}"


class _ToReporter(logging.Handler):
    def __init__(self, reporter):
        super().__init__(logging.WARNING)
        self.reporter = reporter
        self.said: set = set()  # ONCE_A_SHOT keys already reported

    def emit(self, record: logging.LogRecord) -> None:
        key = getattr(record, ONCE_A_SHOT, None)
        if key is not None:
            if key in self.said:
                return
            self.said.add(key)
        self.reporter.warning(_one_line(record.getMessage()))


@contextlib.contextmanager
def _warnings_to(reporter):
    """While frames run, library warnings (the engine's fallbacks, an unusable cache) are
    the reporter's: the same line on stderr, and an event in ``--json-log`` for the Nuke
    node and farm parsers, with the frame they came from."""
    root = logging.getLogger()
    saved_handlers, saved_show = root.handlers[:], warnings.showwarning
    # the reporter writes the stderr line itself; other handlers (a host's) stay
    root.handlers = [h for h in saved_handlers if not isinstance(h.formatter, _OneLine)]
    root.addHandler(_ToReporter(reporter))
    warnings.showwarning = lambda message, *rest, **kw: reporter.warning(_one_line(message))
    try:
        yield
    finally:
        root.handlers = saved_handlers
        warnings.showwarning = saved_show


def setup_logging() -> None:
    """Library warnings reach the user as one ``hdmatt: warning:`` line each (also when
    quiet: they are about the result)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    # PyMatting's solver divides by zero on degenerate frames; the engine then warns once
    # that it fell back, which is the line the user needs
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pymatting")
    warnings.showwarning = lambda message, category, *rest, **kw: print(
        f"hdmatt: warning: {_one_line(message)}", file=sys.stderr)


def check_engine_files(options: dict) -> None:
    """Refuse what :func:`load_engine` would about the device and the weights file (missing,
    not the file its ``.sha256`` records, not HDMatt weights) without loading the network,
    for a caller that writes files before the engine loads (the demo's plate). Imports torch.

    Raises
    ------
    UsageError, WeightsError
    """
    from ..engine.runner import resolve_device
    from ..engine.weights import header_metadata, verified_sha256
    if options.get("weights"):
        verified_sha256(options["weights"])
        header_metadata(options["weights"])  # a file of another kind, or no HDMatt config
    try:
        resolve_device(options.get("device", "auto"))
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None


def load_engine(options: dict, reporter):
    """Load the engine once for this run (imports torch).

    Raises
    ------
    UsageError
        Weights file missing, a bad device/precision/prior/patch value, or ``prior="none"``
        with weights that take a prior.
    """
    kw = dict(options)
    if kw.get("weights") and not os.path.isfile(kw["weights"]):
        raise UsageError("weights file not found", path=kw["weights"])
    t0 = time.monotonic()
    from ..engine import Engine
    try:
        engine = Engine.load(**kw)
    except ValueError as exc:  # bad device/precision/prior/patch values
        raise UsageError(" ".join(str(exc).split())) from None
    if engine.settings.prior == "none" and engine.cfg.uses_prior:
        raise UsageError("--prior none: these weights take a classical prior as input; "
                         "use auto, cascade, global or local",
                         path=str(engine.weights_path or ""))
    params = engine.params()
    import torch
    cpu = f", {torch.get_num_threads()} CPU thread(s)" if params.get("device") == "cpu" else ""
    precision = params.get("precision")
    if precision != "fp32":
        from ..engine.runner import cpu_has_native_bf16
        emulated = params.get("device") == "cpu" and not (precision == "bf16"
                                                           and cpu_has_native_bf16())
        cpu += f", {precision}" + (" (emulated on this CPU: slower than fp32)" if emulated else "")
    reporter.message(f"engine {ENGINE_VERSION}: weights {engine.weights_id} on {params.get('device')}"
                     f" (patch {params.get('patch')}, overlap {params.get('overlap')}, k "
                     f"{params.get('k')}{cpu}) loaded in {time.monotonic() - t0:.1f}s")
    return engine


def open_cache(settings: RunSettings):
    """The frame cache the settings ask for, or None (off, or no folder to read). A folder
    this process cannot write (a farm's cache mounted read-only on workstations) still
    serves the frames it holds; it was warned about once, naming it."""
    from .cache import FrameCache
    if settings.no_cache:
        return None
    try:
        cache = FrameCache(settings.cache)
        return cache if cache.usable() or cache.root.is_dir() else None
    except (OSError, RuntimeError) as exc:  # a folder no one may look into; no home folder
        where = settings.cache or os.environ.get("HDMATT_CACHE") or "the default folder"
        reason = getattr(exc, "strerror", None) or str(exc).rstrip(".")
        log.warning("cache %s: %s; going on without a cache", where, reason)
        return None


def _check_json_log(json_log: str | None, job, plan, settings: RunSettings) -> None:
    """``--json-log`` is appended to: it must not be one of the inputs or outputs, nor a
    file the run reads besides them (the weights and their sidecars, the OCIO config)."""
    if not json_log:
        return
    from ..engine.weights import BUNDLED_WEIGHTS  # no torch
    from ..sequence import FrameSequence, input_sequence
    from .plan import overwritten_input
    files = [input_sequence(p) for p in (job.plate, job.trimap or job.trimap_from_matte)]
    files.append(FrameSequence(job.output))
    weights = str(settings.engine.get("weights") or BUNDLED_WEIGHTS)
    ocio = job.ocio or os.environ.get("OCIO", "")
    read = [weights, weights + ".sha256", weights + ".detail.json"] + \
        ([ocio] if ocio and not ocio.startswith("ocio://") else [])
    files += [FrameSequence(p, literal=True) for p in read]
    clash = overwritten_input(FrameSequence(json_log, literal=True), files, plan.frames)
    if clash:
        raise UsageError(f"--json-log would write into {clash[1]}; choose another file",
                         path=json_log)


def run_matte(job, settings: RunSettings) -> int:
    """Plan, check, matte and summarise a job; returns the exit code.

    Per-frame failures are listed on stderr (exit 1); a stop by Ctrl-C or SIGTERM keeps the
    finished frames (exit 128 + signal). Problems that would hit every frame raise
    :class:`~nuke_hdmatt.errors.HDMattError` for the caller to report.
    """
    from .matte import preflight, remove_created, summarize
    from .plan import plan_frames

    plan = plan_frames(job)
    _check_json_log(settings.json_log, job, plan, settings)
    created = preflight(job, plan)
    result = None
    try:
        # Nothing of a matte run belongs on stdout (progress is on stderr): libraries'
        # prints (PyMatting's PERFORMANCE WARNING blocks) go to stderr, or nowhere if quiet.
        with open(os.devnull, "w") if settings.quiet else contextlib.nullcontext(sys.stderr) \
                as chatter, contextlib.redirect_stdout(chatter):
            result = _run_planned(job, settings, plan)
    finally:
        if result is None or not result.done:
            remove_created(created)
    if result.cancelled:
        print(f"hdmatt: cancelled; {len(result.done)} frame(s) finished and kept", file=sys.stderr)
        _print_failed(result)  # failed before the stop: a rerun must know them
        return exit_for_signal(result.signum)
    line = summarize(result)
    if result.failed:
        print(f"hdmatt: {line}", file=sys.stderr)
        _print_failed(result)
        return EXIT_FAILED_FRAMES
    if not settings.quiet:
        print(f"hdmatt: {line}", file=sys.stderr)
    return EXIT_OK


def _print_failed(result) -> None:
    for frame in sorted(result.failed, key=lambda f: -1 if f is None else f):
        print(f"hdmatt:   frame {frame}: {result.failed[frame]}", file=sys.stderr)


def stopping_line(signum: int) -> str:
    """What a first stop signal is told: a second Ctrl-C aborts at once, but a farm's SIGTERM
    comes from no keyboard (and its second one, or its SIGKILL, needs no hint)."""
    if signum == signal.SIGINT:
        return "stopping after the current patch (Ctrl-C again to abort now)"
    return "terminated; stopping after the current patch"


def _run_planned(job, settings: RunSettings, plan):
    """Open the cache and the reporter around :func:`run_shot`, stoppable by Ctrl-C."""
    from ..stop_signals import SigintCancel
    from .matte import ShotResult, report_shot_done
    from .progress import ProgressReporter

    reporter = ProgressReporter(len(plan.frames), quiet=settings.quiet,
                                json_log=settings.json_log)
    on_first = lambda signum: print(f"\nhdmatt: {stopping_line(signum)}", file=sys.stderr)
    result, error = ShotResult(), None
    try:
        with _warnings_to(reporter), SigintCancel(on_first=on_first) as cancel:
            try:
                cache = open_cache(settings)
                run_shot(job, settings, cache, reporter, plan=plan, cancel=cancel,
                         result=result)
                result.signum = cancel.signum
                if cache is not None:
                    cache.trim()
                    cache.report_corrupt()
            except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C, a SIGTERM's abort
                result.cancelled = True
                raise
            except HDMattError as exc:  # said as the run's one error line too
                error = exc.one_line()
                raise
            finally:
                # the last record whatever ended the run (a log reader waits for it), after
                # the cache's own warnings
                report_shot_done(reporter, result, error)
    finally:
        reporter.close()
    return result


def run_shot(job, settings: RunSettings, cache, reporter, *, plan=None, cancel=None,
             result=None):
    """Load the engine and matte the planned frames; a :class:`~nuke_hdmatt.shot.matte.ShotResult`
    (``result``, filled as the frames go, when given; cancelled when ``cancel()`` turned True
    while the engine loaded)."""
    from .matte import ShotResult, matte_shot
    from .plan import plan_frames

    plan = plan or plan_frames(job)
    cancel = cancel or (lambda: False)
    if plan.missing:
        from ..sequence import format_frames
        reporter.message(f"missing frames (will be reported as failed): "
                         f"{format_frames(plan.missing)}")
    if settings.threads:
        import OpenImageIO as oiio
        import torch
        torch.set_num_threads(settings.threads)
        oiio.attribute("threads", settings.threads)
    result = result if result is not None else ShotResult()
    engine = load_engine(settings.engine, reporter)
    if cancel():
        result.cancelled = True
        return result
    if cache is not None:
        reporter.message(f"cache: {cache.root}")
    return matte_shot(job, engine, cache=cache, reporter=reporter, cancel=cancel, plan=plan,
                      result=result)
