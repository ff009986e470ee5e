"""Typed errors shared by every layer.

Each carries what a user needs to find the problem (file, frame, channel, knob);
the CLI turns them into one line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal

# The exit codes of every hdmatt command (the shell convention 128 + signal for a stop).
EXIT_OK = 0
EXIT_FAILED_FRAMES = 1   # some frames failed; the others were written
EXIT_USAGE = 2           # bad input: one line ``prog: error: ...``
EXIT_INTERNAL = 3        # a bug
EXIT_INTERRUPTED = 128 + signal.SIGINT

# A library warning about what every frame of a shot shares (a stereo plate's parts) sets
# this attribute of its log record (``extra=``) to a key: the shot reports it once, not per frame.
ONCE_A_SHOT = "hdmatt_once_a_shot"


def exit_for_signal(signum: int | None) -> int:
    """Exit code of a run stopped by ``signum`` (Ctrl-C when unknown)."""
    return 128 + (signum or signal.SIGINT)


class HDMattError(Exception):
    """Base of every user-facing error."""

    def __init__(self, message: str, *, path: str | None = None, frame: int | None = None,
                 channel: str | None = None):
        self.path = path
        self.frame = frame
        self.channel = channel
        self.message = message
        super().__init__(self.one_line())

    def one_line(self, with_frame: bool = True) -> str:
        """The message after where it happened: path, frame (unless ``with_frame`` is False,
        for lists that name the frame already), channel."""
        where = []
        if self.path:
            where.append(str(self.path))
        if self.frame is not None and with_frame:
            where.append(f"frame {self.frame}")
        if self.channel:
            where.append(f"channel {self.channel}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class PlateError(HDMattError):
    """A plate could not be read or is unusable (missing, truncated, wrong channels)."""


class MissingFileError(PlateError):
    """A file that should exist does not."""


class ChannelError(PlateError):
    """A requested channel is not in the file."""


class TrimapError(HDMattError):
    """The trimap is invalid (size mismatch, NaN, unusable encoding)."""


class SizeMismatchError(TrimapError):
    """Plate and trimap (or matte) windows differ."""


class ColorSpaceError(HDMattError):
    """Unknown colour space name or unusable OCIO config."""


class WeightsError(HDMattError):
    """Weights file missing, corrupt, or not an HDMatt weights file."""


class OutputError(HDMattError):
    """The output could not be written."""


class UsageError(HDMattError):
    """Bad command-line or knob value."""


class OutOfMemory(HDMattError):
    """The machine (GPU or RAM) had too little memory free for a frame."""


class Cancelled(Exception):
    """Work was cancelled by the user (Ctrl-C, Nuke's cancel button)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise :class:`UsageError` (one line, exit 2 where the
    command reports errors) instead of printing a usage block; sub-command parsers are of
    this class too."""

    def error(self, message):
        raise UsageError(f"{' '.join(message.split())} (see '{self.prog} --help')")


def run_reporting(prog: str, body, interrupted: str = "interrupted", *,
                  report_bugs: bool = False) -> int:
    """Run a command's ``body()`` and turn what stops it into one line and an exit code.

    The one place every ``hdmatt`` command (and the Nuke prepass) maps outcomes to exits:

    - :class:`HDMattError` -> ``prog: error: ...`` and :data:`EXIT_USAGE`;
    - Ctrl-C or SIGTERM -> ``prog: <interrupted>`` (its first word ``terminated`` for
      SIGTERM) and 128 + the signal; also a bug raised while a stop signal was arriving
      (Ctrl-C inside an import or a C extension surfaces as another exception);
    - a closed stdout pipe (``hdmatt cache ls | head``) -> :data:`EXIT_OK`;
    - a bug raises, or with ``report_bugs`` becomes ``prog: internal error: ...`` and
      :data:`EXIT_INTERNAL` (``HDMATT_DEBUG=1`` still raises, for the traceback);
    - otherwise ``body``'s return value (None counts as 0).
    """
    import os
    import sys

    from .stop_signals import stop_signal
    try:
        return body() or EXIT_OK
    except HDMattError as exc:
        print(f"{prog}: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _stopped(prog, interrupted, stop_signal())
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if stop_signal():
            return _stopped(prog, interrupted, stop_signal())
        if not report_bugs or os.environ.get("HDMATT_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
              f"(set HDMATT_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _stopped(prog: str, interrupted: str, signum: int | None) -> int:
    import sys
    if signum == signal.SIGTERM and interrupted.startswith("interrupted"):
        interrupted = "terminated" + interrupted[len("interrupted"):]
    # a new line: Ctrl-C leaves the terminal mid-line (^C, a progress line)
    print(f"\n{prog}: {interrupted}", file=sys.stderr)
    return exit_for_signal(signum)
