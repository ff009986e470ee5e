"""Progress, ETA and cancellation for long runs (a shot of frames, each of many patches).

Human progress goes to stderr (stdout stays clean for ``hdmatt farm openjd > job.yaml`` and
for scripts); ``--json-log FILE`` appends one JSON object per line for farm log parsers::

    {"t": 1764048000.12, "event": "message", "text": "engine 0.6.1: weights ..."}
    {"t": ..., "event": "frame_start", "frame": 1001, "plate": "...", "output": "..."}
    {"t": ..., "event": "progress", "frame": 1001, "done": 3, "total": 12, "stage": "...",
     "eta_s": 4.1, "fraction": 0.2}
    {"t": ..., "event": "frame_done", "frame": 1001, "output": "...", "cached": false, "seconds": 2.3,
     "weights": "/abs/model/hdmatt.safetensors", "weights_sha256": "..."}
    {"t": ..., "event": "frame_failed", "frame": 1002, "error": "..."}
    {"t": ..., "event": "warning", "text": "...", "frame": 1001}   (frame: when it is a frame's)
    {"t": ..., "event": "shot_done", "done": [...], "failed": [...], "cancelled": false}
    (with "error": "..." when an error ended the run early)

Ctrl-C: :class:`~nuke_hdmatt.stop_signals.SigintCancel` turns the first SIGINT (or SIGTERM)
into a flag that the engine polls between patches (it then raises
:class:`~nuke_hdmatt.errors.Cancelled`), so a frame stops at a patch boundary and nothing is
left half written; a second one interrupts at once.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from ..errors import UsageError

__all__ = ["ProgressReporter", "format_duration"]

# Non-interactive logs (farm, CI) get a patch line at most this often, not one per patch.
LOG_INTERVAL_S = 5.0


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``"1m15s"``; ``None`` -> ``"?"``."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressReporter:
    """Per-frame and per-patch progress with ETA on a text stream, plus a JSON-lines log.

    Parameters
    ----------
    total_frames : int
        Frames this run will attempt (for the shot ETA).
    stream : text stream, optional
        Where human-readable progress goes; default ``sys.stderr``.
    quiet : bool
        Suppress human progress (errors and the final summary are the caller's business).
    json_log : str, optional
        File to append JSON lines to.
    """

    def __init__(self, total_frames: int, *, stream: TextIO | None = None, quiet: bool = False,
                 json_log: str | None = None):
        self.total = max(int(total_frames), 0)
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._json = None
        if json_log:
            try:
                self._json = open(json_log, "a", encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--json-log: cannot open for writing: {exc.strerror}",
                                 path=json_log) from None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._frame = None
        self._frame_t0 = 0.0
        self._count_start: tuple[int, int, float] | None = None   # (done, total, time)
        self._last_line = 0.0
        self._index = 0
        self._computed_seconds: list[float] = []
        self._open_line = False

    # ---- JSON log -------------------------------------------------------------------------
    def event(self, kind: str, **fields) -> None:
        """Append one JSON line (``t`` epoch seconds, ``event`` kind, then ``fields``)."""
        if self._json is None:
            return
        record = {"t": round(time.time(), 3), "event": kind, **fields}
        try:
            self._json.write(json.dumps(record, default=str) + "\n")
            self._json.flush()  # farm parsers tail the file while we run
        except OSError as exc:
            # a side channel: its disk filling up must not stop the shot
            log, self._json = self._json, None
            try:
                log.close()
            except OSError:
                pass
            self._end_line()
            self.stream.write(f"hdmatt: warning: --json-log {log.name}: cannot write "
                              f"({exc.strerror or exc}); going on without it\n")
            self.stream.flush()

    def close(self) -> None:
        """End the status line and close the JSON log."""
        self._end_line()
        if self._json is not None:
            self._json.close()
            self._json = None

    # ---- human output ---------------------------------------------------------------------
    def _say(self, text: str, *, transient: bool = False) -> None:
        if self.quiet:
            return
        if self._tty and transient:
            self.stream.write("\r\x1b[2K" + text)
            self._open_line = True
        else:
            self._end_line()
            self.stream.write(text + "\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._open_line and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self._open_line = False

    def message(self, text: str) -> None:
        """A free-form line (engine loaded, cache location...)."""
        self._say(text)
        self.event("message", text=text)

    def warning(self, text: str) -> None:
        """A line the user must see (also with ``quiet``): ``hdmatt: warning: text``."""
        self._end_line()
        self.stream.write(f"hdmatt: warning: {text}\n")
        self.stream.flush()
        self.event("warning", frame=self._frame, text=text)

    def _shot_eta(self) -> float | None:
        if not self._computed_seconds:
            return None
        per_frame = sum(self._computed_seconds) / len(self._computed_seconds)
        return per_frame * max(self.total - self._index, 0)

    # ---- frames ---------------------------------------------------------------------------
    def frame_start(self, frame, **fields) -> None:
        """A frame begins (``frame`` is an int, or None for a single still)."""
        self._frame = frame
        self._frame_t0 = time.monotonic()
        self._count_start = None
        self._last_line = 0.0
        self.event("frame_start", frame=frame, **fields)

    def patch(self, done: int, total: int, stage: str = "", *,
              fraction: float | None = None) -> None:
        """Engine progress callback: ``done`` of ``total`` steps of the current frame (the
        engine's count over the frame's passes, then the foreground's levels and tiles); ``fraction``:
        how much of the frame that is, for a bar that spans both (:meth:`share`)."""
        eta = self._frame_eta(done, total)
        extra = {} if fraction is None else {"fraction": round(fraction, 4)}
        self.event("progress", frame=self._frame, done=done, total=total, stage=stage,
                   eta_s=None if eta is None else round(eta, 1), **extra)
        now = time.monotonic()
        if not self._tty and done < total and now - self._last_line < LOG_INTERVAL_S:
            return
        self._last_line = now
        pct = 100.0 * done / total if total else 100.0
        label = "" if self._frame is None else f"frame {self._frame} "
        self._say(f"{self._counter()}{label}{stage or 'patches'} {done}/{total} ({pct:.0f}%) "
                  f"frame ETA {format_duration(eta)}", transient=True)

    def share(self, start: float, end: float):
        """A progress callback for the part of each frame from ``start`` to ``end`` (0-1):
        its events carry the frame's ``fraction``, so a bar over the matte and then the
        foreground goes only forward."""
        def report(done: int, total: int, stage: str = "") -> None:
            part = done / total if total else 1.0
            self.patch(done, total, stage, fraction=start + (end - start) * part)
        return report

    def _frame_eta(self, done: int, total: int) -> float | None:
        """The rest of the count at its rate since its first report this frame (the
        time before that went on reading, the prior and the first batch, not on the steps
        counted); until two reports, what the shot's computed frames took, less the time
        this one has run."""
        now = time.monotonic()
        first = self._count_start
        if first is None or total != first[1] or done < first[0]:
            self._count_start = first = (done, total, now)
        if done > first[0]:
            return (now - first[2]) / (done - first[0]) * (total - done)
        if self._computed_seconds:
            mean = sum(self._computed_seconds) / len(self._computed_seconds)
            return max(mean - (now - self._frame_t0), 0.0)
        return None

    def _counter(self) -> str:
        return f"[{self._index + 1}/{self.total}] " if self.total > 1 else ""

    def frame_done(self, frame, *, output: str, cached: bool, **fields) -> None:
        """The frame's alpha was written to ``output``."""
        seconds = time.monotonic() - self._frame_t0
        counter = self._counter()
        self._index += 1
        if not cached:
            self._computed_seconds.append(seconds)
        self.event("frame_done", frame=frame, output=output, cached=cached,
                   seconds=round(seconds, 3), **fields)
        self._frame = None  # a warning between frames is no frame's
        label = "" if frame is None else f"frame {frame} "
        how = "from cache" if cached else f"in {format_duration(seconds)}"
        eta = self._shot_eta()
        tail = f", shot ETA {format_duration(eta)}" if self._index < self.total and eta else ""
        self._say(f"{counter}{label}done {how} -> {output}{tail}")

    def frame_failed(self, frame, error: str, *, said_elsewhere: bool = False) -> None:
        """The frame could not be made; the run goes on with the next one (or, with
        ``said_elsewhere``, stops on an error whose own one line tells the user)."""
        counter = self._counter()
        self._index += 1
        self.event("frame_failed", frame=frame, error=error)
        self._frame = None
        if not said_elsewhere:
            label = "" if frame is None else f"frame {frame} "
            self._say(f"{counter}{label}FAILED: {error}")

    def shot_done(self, *, done: list, failed: list, cancelled: bool = False,
                  error: str | None = None) -> None:
        """Final JSON record of the run; ``error``: the one line that ended it early."""
        extra = {} if error is None else {"error": error}
        self.event("shot_done", done=done, failed=failed, cancelled=cancelled, **extra)
