"""Which frames a shot runs and where they go: the job, its frame plan, and the promise that
no output ever replaces an input.

:func:`plan_frames` resolves the plate, trimap (or matte) and output sequences against
what is on disk and the frames asked for, before any pixel is read: frames outside the
sequence are a mistake (refused), gaps inside it are missing frames (listed, the rest run),
and an output that would be an input file (compared as files, not strings) stops the run.
:mod:`.matte` runs the plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import UsageError
from ..sequence import FrameSequence, frames_on_disk, input_sequence

__all__ = ["MatteJob", "FramePlan", "plan_frames", "frames_found", "overwritten_input",
           "trimap_source"]


@dataclass
class MatteJob:
    """What to matte and how (everything ``hdmatt matte`` takes except engine settings).

    Paths are single files or sequences (see :mod:`nuke_hdmatt.sequence`).
    """

    plate: str
    trimap: str | None
    output: str
    frames: list[int] | None = None
    plate_channels: tuple[str, ...] = ("R", "G", "B")
    part: str | None = None  # EXR part of the plate (and trimap/matte, where they have it)
    trimap_channel: str | None = None
    trimap_from_matte: str | None = None
    band: int = 16
    plate_colorspace: str | None = None
    ocio: str | None = None
    layer: str = "rgba"
    compression: str = "zip"
    half: bool = True
    bit_depth: int = 8
    alpha_only: bool = False       # EXR: the alpha (and foreground) alone, no plate channels
    foreground: str | None = None  # layer for the unpremultiplied foreground (EXR only)
    premultiplied: bool = False    # alpha * foreground into the alpha's layer R, G, B
    exposure: str = "fit"          # exposure.exposure_value: fit, off or stops


@dataclass
class FramePlan:
    """The frames to attempt and those already known to be missing (frame -> message)."""

    frames: list  # int frames, or [None] for a single still
    missing: dict = field(default_factory=dict)
    #: frame -> its prepared inputs, read and converted by :func:`preflight`, so
    #: :func:`matte_shot` does not read and convert that frame a second time
    prepared: dict = field(default_factory=dict)

    @property
    def is_still(self) -> bool:
        return self.frames == [None]


def trimap_source(job: MatteJob) -> str:
    source = job.trimap_from_matte or job.trimap
    assert source is not None  # a job has a trimap or a matte
    return source


def plan_frames(job: MatteJob) -> FramePlan:
    """Decide which frames to run and which are missing on disk.

    Without ``job.frames`` a sequence's frames are the files found on disk for the first
    sequence among plate, trimap/matte; gaps between the first and last are missing frames
    (reported, never filled in from neighbours).

    Raises
    ------
    UsageError
        Inconsistent single files / sequences, or no frames found.
    """
    if job.trimap and job.trimap_from_matte:
        raise UsageError("give either TRIMAP or --trimap-from-matte, not both")
    if not job.trimap and not job.trimap_from_matte:
        raise UsageError("a trimap is needed: TRIMAP or --trimap-from-matte MATTE")
    inputs = [input_sequence(job.plate), input_sequence(trimap_source(job))]
    out = FrameSequence(job.output)
    seqs = [s for s in inputs if s.is_sequence]
    if not seqs and not out.is_sequence:
        if job.frames and len(job.frames) > 1:
            raise UsageError("--frames given but plate, trimap and output are single files")
        frames: list[int | None] = [None]
    else:
        if job.frames:
            frames = list(job.frames)
            if seqs:
                _check_frames_on_disk(frames, seqs[0])
        elif seqs:
            found = frames_on_disk(seqs[0])
            if not found:
                raise UsageError("no frames of this sequence found on disk; check the pattern "
                                 "or give --frames", path=seqs[0].pattern)
            frames = list(range(found[0], found[-1] + 1))
        else:
            raise UsageError("output is a sequence but the inputs are single files: give --frames",
                             path=job.output)
        if not out.is_sequence and len(frames) > 1:
            raise UsageError(f"output is a single file but {len(frames)} frames were asked for; "
                             "use a pattern like alpha.####.exr", path=job.output)
    clash = overwritten_input(out, inputs, frames)
    if clash:
        frame, path = clash
        raise UsageError(f"output would overwrite an input ({path}"
                         f"{'' if frame is None else f', frame {frame}'}); choose another -o",
                         path=job.output)
    plan = FramePlan(frames=frames)
    if frames != [None]:
        for seq in inputs:
            if not seq.is_sequence and not os.path.exists(seq.pattern):
                raise UsageError("file not found", path=seq.pattern)  # every frame reads it
            for f in seq.missing(frames):
                plan.missing.setdefault(f, f"{seq.path(f)}: file not found")
        if len(plan.missing) == len(frames):
            first = plan.missing[frames[0]]
            raise UsageError(f"none of the {len(frames)} frame(s) asked for has all its "
                             f"inputs on disk (frame {frames[0]}: {first})")
    return plan


def frames_found(seq: FrameSequence) -> str:
    """``"3 frame(s) of plate.####.exr on disk (1-3)"``: what the sequence has, for messages."""
    found = frames_on_disk(seq)
    span = f" ({found[0]}-{found[-1]})" if found else ""
    return f"{len(found)} frame(s) of {seq.pattern} on disk{span}"


def _check_frames_on_disk(frames: list, seq: FrameSequence) -> None:
    """Frames asked for outside the sequence's first..last file on disk are a mistake (a
    typo, the wrong shot), refused at once; gaps inside it are missing frames."""
    found = frames_on_disk(seq)
    if not found:
        raise UsageError("no frames of this sequence found on disk; check the pattern",
                         path=seq.pattern)
    outside = sum(1 for f in frames if f < found[0] or f > found[-1])
    if outside:
        raise UsageError(f"--frames: {outside} of the {len(frames)} frame(s) asked for lie "
                         f"outside the {frames_found(seq)}")


def overwritten_input(out: FrameSequence, inputs, frames):
    """(frame, input path) of the first frame whose output is an input file, else None.

    Files are compared, not strings: ``plate.%04d.exr`` for ``plate.####.exr``, a symlink,
    a hard link or ``..`` in the path all name the plate. An existing output is compared by
    device and inode with every input file on disk, whatever its frame: ``-o
    plate.1001.exr --frames 1002`` would replace another frame of the plate. One that does
    not exist yet is compared by its normalised real path with the same frame's inputs.
    """
    real_dirs: dict[str, str] = {}

    def where(path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        return os.path.normcase(os.path.join(real_dirs[folder], os.path.basename(path)))

    # names case-folded: on a case-insensitive volume (macOS, an SMB share) -o PLATE.png is
    # plate.png; a stat then says whether it is (an unreadable folder: stat every frame)
    existing: set[str] | None
    try:
        existing = {n.casefold() for n in
                    os.listdir(os.path.dirname(os.path.abspath(out.path(frames[0]))))}
    except OSError:
        existing = None
    on_disk: dict | None = None  # (device, inode) -> input file, listed at the first need
    for frame in frames:
        target = out.path(frame)
        here = where(target)
        stat = None
        if existing is None or os.path.basename(target).casefold() in existing:
            try:
                stat = os.stat(here)
            except OSError:
                pass
        for seq in inputs:
            source = seq.path(frame)
            if where(source) == here:
                return frame, source
            if stat is not None:
                try:
                    other = os.stat(source)
                except OSError:
                    continue
                if (other.st_dev, other.st_ino) == (stat.st_dev, stat.st_ino):
                    return frame, source
        if stat is not None:
            if on_disk is None:
                on_disk = _input_files(inputs)
            source = on_disk.get((stat.st_dev, stat.st_ino))
            if source is not None:
                return frame, source
    return None


def _input_files(inputs) -> dict:
    """(device, inode) -> path of every file of ``inputs`` on disk (all frames of a
    sequence, not only those of the run)."""
    found: dict[tuple[int, int], str] = {}
    for seq in inputs:
        paths = [seq.path(f) for f in frames_on_disk(seq)] if seq.is_sequence else [seq.pattern]
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.setdefault((st.st_dev, st.st_ino), path)
    return found
