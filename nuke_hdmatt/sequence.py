"""Image sequences: frame-number patterns in paths and frame-range strings.

Pattern syntax (the conventions compositors type into Nuke and farm submitters):

``####``      one ``#`` per digit (Nuke): ``plate.####.exr`` -> ``plate.1001.exr``
``@@@@``      one ``@`` per digit; a single ``@`` is an unpadded frame number
``%04d``      printf style; ``%d`` is unpadded

Frame ranges: ``1001``, ``1001-1100``, ``1001-1100x2`` (every 2nd frame), ``1001-1100:2``
(the Open Job Description spelling), and comma lists of those: ``1,5,10-12``.

An input whose name only looks like a pattern (``plate@2x.png``, ``shot#3.exr``) is that file
when it exists and the pattern names no frame on disk (:func:`input_sequence`).

Missing frames are reported, never guessed: :meth:`FrameSequence.missing` lists the frames
whose file does not exist; nothing here substitutes a neighbouring frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["FrameSequence", "frame_file", "parse_frames", "format_frames", "frames_on_disk",
           "input_sequence", "is_pattern",
           "FrameCountError", "MAX_FRAMES"]

# Only the last frame token in the file name counts: directories like ``shot_#1`` are rare,
# but a hash in a folder name must not be taken as the frame number.
_TOKEN = re.compile(r"(#+|@+|%0?(\d*)d)")
_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:[x:](\d+))?)?$")

# More frames than any shot has: a typo like 1-30000000 is refused at once (counted, not
# expanded) instead of building a list of millions of frames and checking each on disk.
MAX_FRAMES = 1_000_000


class FrameCountError(UsageError):
    """``--frames`` asks for more than :data:`MAX_FRAMES` frames; ``count`` says how many."""

    def __init__(self, message: str, count: int):
        super().__init__(message)
        self.count = count


@dataclass(frozen=True)
class FrameSequence:
    """A path that is either a single file or a frame-numbered sequence.

    Parameters
    ----------
    pattern : str
        The path as typed by the user (``plate.####.exr`` or ``plate.exr``).
    literal : bool
        The path is one file even though its name holds a frame token (see
        :func:`input_sequence`).
    """

    pattern: str
    literal: bool = False

    @property
    def _match(self):
        if self.literal:
            return None
        name = os.path.basename(self.pattern)
        matches = list(_TOKEN.finditer(name))
        return matches[-1] if matches else None

    @property
    def is_sequence(self) -> bool:
        """True when the path holds a frame-number token."""
        return self._match is not None

    @property
    def padding(self) -> int:
        """Digits of zero padding; 0 or 1 mean unpadded, 0 for a single file."""
        m = self._match
        if m is None:
            return 0
        token = m.group(1)
        if token.startswith("%"):
            return int(m.group(2) or 0)
        return 1 if token == "@" else len(token)

    def _split(self) -> tuple[str, str]:
        m = self._match
        head = os.path.dirname(self.pattern)
        name = os.path.basename(self.pattern)
        prefix = os.path.join(head, name[: m.start()]) if head else name[: m.start()]
        return prefix, name[m.end():]

    def path(self, frame: int | None) -> str:
        """The file for ``frame``; single files ignore the frame.

        Raises
        ------
        UsageError
            When a sequence is asked for without a frame number.
        """
        if not self.is_sequence:
            return self.pattern
        if frame is None:
            raise UsageError("is a frame sequence: give --frames", path=self.pattern)
        prefix, suffix = self._split()
        # printf's width, which counts a minus sign: Nuke reads #### as %04d, so its frame -1
        # is -001 (as in fileseq and Python's %04d), not -0001
        return f"{prefix}{frame:0{max(self.padding, 1)}d}{suffix}"

    def paths(self, frames) -> list[str]:
        """Paths for ``frames`` (an iterable of int), in order."""
        return [self.path(f) for f in frames]

    def missing(self, frames) -> list[int]:
        """The frames in ``frames`` whose file does not exist (empty for present files)."""
        return [f for f in frames if not os.path.isfile(self.path(f))]

    def glob_regex(self) -> re.Pattern:
        """A regex over file names that captures the frame number as group 1."""
        prefix, suffix = self._split()
        pad = self.padding
        digits = r"(-?\d+)" if pad <= 1 else r"(-\d{%d,}|\d{%d,})" % (pad - 1, pad)
        return re.compile("^" + re.escape(os.path.basename(prefix)) + digits + re.escape(suffix) + "$")

    def __str__(self) -> str:
        return self.pattern


def frames_on_disk(seq: FrameSequence) -> list[int]:
    """Frame numbers of the sequence's files that exist, sorted.

    Only files whose number has exactly the pattern's padding count (``plate.01.exr`` is not
    frame 1 of ``plate.####.exr``), so a stray file cannot silently join the shot.
    """
    if not seq.is_sequence:
        return []
    folder = os.path.dirname(seq.pattern) or "."
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    rx = seq.glob_regex()
    frames = []
    for name in names:
        m = rx.match(name)
        if m and seq.path(int(m.group(1))) == os.path.join(os.path.dirname(seq.pattern), name):
            frames.append(int(m.group(1)))
    return sorted(set(frames))


def input_sequence(path: str | os.PathLike) -> FrameSequence:
    """The :class:`FrameSequence` of an input path: a pattern, unless a file of that very
    name exists and the pattern has no frame on disk, as ``plate@2x.png`` (a design tool's
    retina name) or ``shot#3.exr`` are single files. Outputs stay patterns: nothing on disk
    says what a new file's name means."""
    seq = FrameSequence(str(path))
    if seq.is_sequence and os.path.isfile(seq.pattern) and not frames_on_disk(seq):
        return FrameSequence(seq.pattern, literal=True)
    return seq


def parse_frames(text: str) -> list[int]:
    """Parse a frame-range string into an ordered list of unique frames.

    Parameters
    ----------
    text : str
        ``"1001"``, ``"1001-1100"``, ``"1001-1100x2"``, ``"1001-1100:2"`` or comma lists of
        those (``"1,5,10-12"``).

    Returns
    -------
    list of int
        Frames in the order given, duplicates dropped.

    Raises
    ------
    UsageError
        On any malformed part, a reversed range or a zero step; the message names the part.
        :class:`FrameCountError` (a UsageError) for more than :data:`MAX_FRAMES` frames.
    """
    if text is None or not str(text).strip():
        raise UsageError("--frames: empty frame range")
    ranges = []
    # spaces separate parts, as in Nuke's frame ranges ("1001 1005", "1-10 20-30"): never
    # glued together ("1001 1005" was frame 10011005); around - x : they belong to the part
    joined = re.sub(r"\s*([x:])\s*", r"\1", str(text).strip())
    joined = re.sub(r"(?<=\d)\s*-\s*", "-", joined)
    for part in re.split(r"[\s,]+", joined):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"--frames: cannot parse {part!r} (use 1001-1100, 1001-1100x2 or 1,5,10-12)")
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if step < 1:
            raise UsageError(f"--frames: step must be at least 1 in {part!r}")
        if end < start:
            raise UsageError(f"--frames: range {part!r} runs backwards")
        ranges.append(range(start, end + 1, step))
    # counted by arithmetic: len() of a range past sys.maxsize frames raises OverflowError
    count = sum((r.stop - r.start - 1) // r.step + 1 for r in ranges)
    if count > MAX_FRAMES:
        raise FrameCountError(f"--frames {str(text).strip()!r} asks for {count} frames "
                              f"(at most {MAX_FRAMES} per run)", count)
    out: list[int] = []
    seen: set[int] = set()
    for r in ranges:
        for f in r:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def format_frames(frames) -> str:
    """Compact a list of frames back into range syntax (``[1,2,3,7]`` -> ``"1-3,7"``)."""
    frames = sorted(set(int(f) for f in frames))
    parts: list[str] = []
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        parts.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ",".join(parts)


def frame_file(path: str | os.PathLike, frame: int | None) -> str:
    """The file of ``frame`` (:meth:`FrameSequence.path`); ``path`` itself for a single file
    or when no frame is given (the imaging layer is then handed a concrete file)."""
    return str(path) if frame is None else FrameSequence(str(path)).path(frame)


def is_pattern(path: str | os.PathLike) -> bool:
    """True when ``path`` contains a frame token."""
    return FrameSequence(str(path)).is_sequence

