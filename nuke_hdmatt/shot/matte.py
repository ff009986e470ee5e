"""Matte a shot's planned frames (:mod:`.plan`): per frame read -> colour -> trimap -> cache
-> engine -> write, with progress, per-frame failures and clean cancellation.

This is the code path behind ``hdmatt matte`` and ``hdmatt demo`` (and what a farm task runs);
it is plain Python over the imaging layer, the cache and an already loaded engine, so the
engine is loaded once per invocation however many frames there are.

Failures are split in two:

* per-frame problems (a missing or truncated frame, a bad trimap on one frame) are reported,
  the frame is listed as failed and the shot goes on (exit code 1 at the end);
* problems that would hit every frame (unknown channel or colour space, bad weights, an
  output that cannot be written) stop the run at once as an :class:`HDMattError`
  (exit code 2), as does any error on a single still.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .. import ENGINE_VERSION
from ..errors import (
    EXIT_FAILED_FRAMES,
    EXIT_OK,
    Cancelled,
    ChannelError,
    ColorSpaceError,
    HDMattError,
    OutputError,
    UsageError,
    WeightsError,
    exit_for_signal,
)
from ..sequence import FrameSequence, format_frames, input_sequence
from .cache import FrameCache
from .plan import FramePlan, MatteJob, plan_frames, trimap_source

__all__ = ["ShotResult", "preflight", "matte_shot", "report_shot_done", "engine_stamp", "summarize"]

# Errors that would repeat on every frame: stop instead of failing each frame in turn. An
# output that cannot be written or weights that cannot load stop the shot at any frame; a
# channel, colour space or setting refused on a later frame than the first (whose inputs
# were checked before the engine loaded, and passed) is that frame's own file.
FATAL_ERRORS = (ChannelError, ColorSpaceError, UsageError, WeightsError, OutputError)
FATAL_AT_ANY_FRAME = (WeightsError, OutputError)

log = logging.getLogger(__name__)

# Matte channels tried in order when --trimap-channel is not given (roto alpha first).
MATTE_CHANNELS = ("A", "Y", "R")

# The foreground's part of a frame's progress when one is written: on a 6K frame (10 %
# unknown, 2 CPU threads) the matte's counted steps took 19 s, the foreground's tiles 3 s
# (2026-12-07)
FOREGROUND_SHARE = 0.15


@dataclass
class ShotResult:
    """Outcome of :func:`matte_shot`. Frames are ints, or None for a single still."""

    done: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    cancelled: bool = False
    signum: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM)

    @property
    def exit_code(self) -> int:
        """0 all done, 1 some frames failed, 128 + signal when cancelled."""
        if self.cancelled:
            return exit_for_signal(self.signum)
        return EXIT_FAILED_FRAMES if self.failed else EXIT_OK


def engine_stamp(engine, colorspace: str, config_desc: str, shape=None,
                 exposure: str = "fit") -> dict:
    """Metadata stamped into every output: what made this alpha (of a frame of ``shape``,
    seen by the network at ``exposure``, ``--exposure``).

    Returns
    -------
    dict
        JSON-able; keys ``engine_version``, ``weights_id``, ``weights_sha256``, ``params``,
        ``ocio_config``, ``colorspace``.
    """
    return {
        "engine_version": ENGINE_VERSION,
        "weights_id": str(getattr(engine, "weights_id", "")),
        "weights_sha256": str(getattr(engine, "weights_sha256", "")),
        "params": {**cache_params(engine, shape), "exposure": exposure},
        "ocio_config": config_desc,
        "colorspace": colorspace,
    }


def cache_params(engine, shape=None) -> dict:
    """Engine parameters that decide the alpha (of a frame of ``shape``: Engine.params).

    The device is left out: at one precision CPU and GPU results differ only by float
    rounding, so a shared cache serves both. The precision stays in: ``auto`` resolves to
    fp16 on a GPU and bf16 or fp32 on a CPU, whose alphas differ by more than rounding.
    """
    params = dict(engine.params(shape))
    params.pop("device", None)
    return params


def _read_matte(path: str, channel: str | None, frame, part: str | None = None):
    """The matte's channel: ``channel``, else the first of :data:`MATTE_CHANNELS` present,
    passing over a constant A (an opaque alpha saved with a roto drawn in RGB); from the
    plate's ``part`` as it applies to the matte (:func:`~..imaging.plates.part_for`)."""
    from ..imaging import read_plate
    from ..imaging.plates import part_for
    from ..imaging.trimaps import is_constant
    part = part_for(path, part)
    if channel:
        return read_plate(path, [channel], frame=None, part=part)
    last: ChannelError | None = None
    found = None
    for name in MATTE_CHANNELS:
        try:
            matte = read_plate(path, [name], frame=None, part=part)
        except ChannelError as exc:
            last = exc
            continue
        if found is None:
            found = matte
        if not (name == "A" and is_constant(matte.pixels)):
            if matte is not found:
                log.warning("%s: alpha channel is constant %g, reading the matte from %s "
                            "instead", path, float(found.pixels.min()), name)
            return matte
    if found is not None:
        return found
    assert last is not None  # MATTE_CHANNELS is not empty
    raise ChannelError(f"no A, Y or R channel in the matte; pass --trimap-channel "
                       f"({last.message})", path=path, frame=frame)


@contextlib.contextmanager
def _naming_config(config_desc: str):
    """A colour error that is the config's (no scene_linear role) names the config."""
    try:
        yield
    except ColorSpaceError as exc:
        if exc.path is None:
            exc.path = config_desc
        raise


def _frame_inputs(job: MatteJob, frame, config, config_desc: str):
    """Read and prepare one frame: (plate, network-space RGB, trimap values, colour space,
    the exposure gain the network sees the plate at, 1 for none)."""
    from ..imaging import (
        check_trimap,
        exposure_gain,
        plate_colorspace,
        read_plate,
        read_trimap,
        to_network_space,
        trimap_from_matte,
    )
    from ..imaging.trimaps import fit_to_plate, fit_trimap_to_plate

    # Paths are expanded here, so imaging gets concrete files (frame=None) and the frame
    # is added to any error afterwards.
    plate = read_plate(input_sequence(job.plate).path(frame), job.plate_channels, frame=None,
                       part=job.part)
    plate.frame = frame
    if plate.pixels.shape[2] != 3:
        raise ChannelError(f"--plate-channels needs exactly 3 channels (R,G,B), got "
                           f"{len(plate.channels)}", path=plate.path, frame=frame)
    colorspace = plate_colorspace(plate, job.plate_colorspace, config)
    if job.trimap_from_matte:
        matte = _read_matte(input_sequence(job.trimap_from_matte).path(frame),
                            job.trimap_channel, frame, job.part)
        values = fit_to_plate(matte.pixels[:, :, 0], matte.data_window, matte.display_window,
                              plate, "matte", matte.path, frame)
        _check_band(job.band, values.shape, matte.path)
        trimap = trimap_from_matte(values, job.band)
    else:
        tri = read_trimap(input_sequence(trimap_source(job)).path(frame), job.trimap_channel,
                          frame=None, part=job.part)
        tri.frame = frame
        tri = fit_trimap_to_plate(tri, plate)
        check_trimap(tri, plate)  # window alignment needs the Trimap, not just its values
        trimap = tri.values
    check_trimap(trimap, plate)
    if job.exposure == "fit":
        with _naming_config(config_desc):
            gain = exposure_gain(plate.pixels, colorspace, config, trimap == 0.5)
    else:  # one exposure for every frame: off (none) or a number of stops
        gain = 1.0 if job.exposure == "off" else 2.0 ** float(job.exposure)
    rgb = to_network_space(plate.pixels, colorspace, config, gain)
    return plate, rgb, trimap, colorspace, gain


def _check_band(band: int, shape, path: str) -> None:
    """A band wider than the frame makes every pixel unknown, and the erosion pads the
    frame by the band: ``--band 20000`` would take minutes or all the memory. (The default
    band is allowed on any frame, even a smaller one.)"""
    limit = max(*shape, MatteJob.band)
    if band > limit:
        raise UsageError(f"--band {band} is wider than the {shape[1]}x{shape[0]} frame "
                         f"(at most {limit} pixels)", path=path)


def preflight(job: MatteJob, plan: FramePlan) -> list[str]:
    """Check the output settings and location and read the first available frame before
    the engine loads.

    A wrong channel, colour space, trimap size, compression, layer or an output folder that
    cannot be written then fails in a second instead of after torch and the weights have
    loaded (or after the first frame was computed). Per-frame problems of that first frame
    are left for :func:`matte_shot` to report with the other frames; when it reads and
    converts cleanly, its inputs are kept in ``plan.prepared``, so :func:`matte_shot` does
    not read and convert it again. The output folder is
    created, and temp files that killed runs left there (older than a day) are removed.

    Returns
    -------
    list of str
        Folders this call created (for :func:`remove_created` when the run then fails).

    Raises
    ------
    HDMattError
        The problems :func:`matte_shot` would stop the run for.
    """
    from ..imaging import resolve_config
    from ..imaging.colour import check_scene_linear
    from ..imaging.plates import check_file_name
    from ..imaging.writing import check_compression, check_layer, output_format
    from .foreground_layers import check_foreground_job, wants_foreground

    # a sequence's name holds for all its frames: refused once here, not frame by frame
    check_file_name(job.plate)
    check_file_name(trimap_source(job))
    check_file_name(job.output, error=OutputError)
    first = plan.frames[0]
    out_path = FrameSequence(job.output).path(first)
    fmt = output_format(out_path)
    check_compression(job.compression, fmt, out_path)
    if fmt == "openexr":
        check_layer(job.layer, out_path)
    elif job.bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, got {job.bit_depth}", path=out_path)
    check_foreground_job(job, fmt, out_path)
    config, config_desc = resolve_config(job.ocio)
    for frame in plan.frames:
        if frame in plan.missing:
            continue
        try:
            inputs = _frame_inputs(job, frame, config, config_desc)
            check_foreground_job(job, output_format(out_path), out_path, inputs[0])
            if wants_foreground(job):
                with _naming_config(config_desc):
                    check_scene_linear(inputs[3], config)
            plan.prepared[frame] = inputs
        except HDMattError as exc:
            _with_frame(exc, frame)
            if plan.is_still or isinstance(exc, FATAL_ERRORS):
                raise
        break
    return _prepare_output(job, plan)


def _prepare_output(job: MatteJob, plan: FramePlan) -> list[str]:
    from ..imaging.writing import check_output_location, remove_stale_temps

    out = FrameSequence(job.output)
    out_path = out.path(plan.frames[0])
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        created = make_folder(folder)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder}: "
                          f"{exc.strerror or exc}", path=out_path) from None
    try:
        check_output_location(out_path)
        try:
            names: set[str] | None = set(os.listdir(folder))
        except OSError:  # a drop box: writable, not listable
            names = None
        for frame in plan.frames:
            path = out.path(frame)
            if names is not None and os.path.basename(path) not in names:
                continue
            if os.path.isdir(path):
                raise OutputError("is a folder; give a file name for the output", path=path)
            if os.path.exists(path) and not os.access(path, os.W_OK):
                # a locked frame (chmod a-w): never replaced, and not computed for nothing
                if plan.is_still:
                    raise OutputError("is read-only; not replaced (make it writable or choose "
                                      "another -o)", path=path)
                plan.missing.setdefault(frame, f"{path}: read-only; not replaced")
                plan.prepared.pop(frame, None)
        if len(plan.missing) == len(plan.frames):  # nothing to run: say so before the engine
            first = plan.frames[0]
            raise OutputError(f"none of the {len(plan.frames)} frame(s) can be made (frame "
                              f"{first}: {plan.missing[first]})", path=job.output)
    except BaseException:
        remove_created(created)
        raise
    rx = out.glob_regex() if out.is_sequence else None
    name = os.path.basename(out.pattern)
    remove_stale_temps(folder, lambda n: n == name or bool(rx and rx.match(n)))
    return created


def make_folder(folder: str) -> list[str]:
    """Create ``folder`` and its missing parents; returns the folders created, deepest
    first, for :func:`remove_created` when the run then fails.

    Raises
    ------
    OSError
        A folder cannot be created (a file in its way, no permission); none is left.
    """
    created = []
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        created.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        remove_created(created)
        raise
    return created


def remove_created(folders: list[str]) -> None:
    """Remove the folders :func:`preflight` created, deepest first, where still empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _with_frame(exc: HDMattError, frame) -> HDMattError:
    if exc.frame is None and frame is not None:
        exc.frame = frame
    return exc


def matte_shot(job: MatteJob, engine, *, cache: FrameCache | None, reporter,
               cancel=None, plan: FramePlan | None = None,
               result: ShotResult | None = None) -> ShotResult:
    """Matte every planned frame of ``job`` with a loaded ``engine``.

    Parameters
    ----------
    job : MatteJob
    engine : nuke_hdmatt.engine.Engine
        Loaded once by the caller; ``engine.matte(rgb, trimap, progress, cancel)`` takes
        float32 HxWx3 sRGB-encoded Rec.709 0-1 and HxW {0, 0.5, 1}.
    cache : FrameCache or None
        None disables caching.
    reporter : nuke_hdmatt.shot.progress.ProgressReporter
    cancel : callable, optional
        Returns True to stop; checked between frames and by the engine between patches.
    plan : FramePlan, optional
        From :func:`plan_frames` (computed when absent).
    result : ShotResult, optional
        Filled as the frames go (the caller's, for the shot's last report whatever ends it).

    Returns
    -------
    ShotResult
        Frames done (written), served from cache, failed (frame -> one-line message), and
        whether the run was cancelled. Frames written before a cancel are kept.

    Raises
    ------
    HDMattError
        A problem that would hit every frame (its frame listed as failed first), or any
        problem on a single still.
    """
    from ..imaging import (
        config_fingerprint,
        has_known,
        has_unknown,
        non_finite_note,
        resolve_config,
        write_alpha,
    )
    from ..imaging.colour import check_scene_linear
    from .foreground_layers import foreground_channels, wants_foreground

    plan = plan or plan_frames(job)
    cancel = cancel or (lambda: False)
    config, config_desc = resolve_config(job.ocio)
    # keyed on what the config does, not its path: Nuke's install and a farm copy share entries
    config_key = config_fingerprint(config) if cache is not None else ""
    result = result if result is not None else ShotResult()
    matte_share = 1.0 - FOREGROUND_SHARE if wants_foreground(job) else 1.0
    for frame in plan.frames:
        if frame in plan.missing:
            result.failed[frame] = plan.missing[frame]
            reporter.frame_failed(frame, plan.missing[frame])
            continue
        if cancel():
            result.cancelled = True
            break
        out_path = FrameSequence(job.output).path(frame)
        reporter.frame_start(frame, plate=input_sequence(job.plate).path(frame), output=out_path)
        try:
            inputs = plan.prepared.pop(frame, None) or _frame_inputs(job, frame, config, config_desc)
            plate, rgb, trimap, colorspace, gain = inputs
            if wants_foreground(job):  # before the alpha is computed for nothing
                with _naming_config(config_desc):
                    check_scene_linear(colorspace, config)
            if gain != 1.0 and job.exposure == "fit":
                stops = math.log2(gain)
                reporter.message(
                    f"{plate.path}: the network sees the plate {abs(stops):.1f} stops "
                    + ("darker: its unknown band holds highlights above display white"
                       if stops < 0 else "brighter: its unknown band stays below half of "
                       "display white") + " (--exposure)")
            where = input_sequence(trimap_source(job)).path(frame)
            replaced = non_finite_note(plate.pixels)
            if replaced:
                reporter.warning(f"{plate.path}: {replaced}")
            if not has_unknown(trimap):
                reporter.warning(f"{where}: the trimap has no unknown pixel; it is written as "
                                 "the alpha (no network run)")
            elif not has_known(trimap):
                reporter.warning(f"{where}: every pixel of the trimap is unknown, so the alpha "
                                 "has no known foreground or background to start from (the "
                                 "wrong file or channel?)")
            elif not ((trimap == 0.0).any() and (trimap == 1.0).any()):
                missing = "background" if (trimap == 1.0).any() else "foreground"
                reporter.warning(f"{where}: the trimap marks no {missing}, so the unknown "
                                 "pixels are judged by colour alone (mark some where you can)")
            stamp = engine_stamp(engine, colorspace, config_desc, trimap.shape, job.exposure)
            key = None
            alpha = None
            if cache is not None:
                key = FrameCache.key(plate.pixels, trimap, weights_sha256=stamp["weights_sha256"],
                                     engine_version=ENGINE_VERSION, params=stamp["params"],
                                     color_config=config_key, colorspace=colorspace)
                alpha = cache.get(key)
            cached = alpha is not None
            if alpha is None:
                if has_unknown(trimap):
                    alpha = engine.matte(rgb, trimap, progress=reporter.share(0.0, matte_share),
                                         cancel=cancel)
                else:
                    # nothing unknown: the trimap is the answer, no network run needed
                    alpha = trimap.astype(np.float32)
                if cache is not None and key is not None:
                    cache.put(key, alpha, {"frame": frame, "plate": plate.path,
                                           "output": out_path, **stamp})
            metadata = {**stamp, "frame": frame, "plate": os.path.abspath(plate.path), "cache_key": key}
            channels = foreground_channels(
                job, engine, plate, alpha, colorspace, config, cache=cache, key=key,
                meta={"frame": frame, "plate": plate.path, "output": out_path, **stamp},
                progress=reporter.share(matte_share, 1.0), cancel=cancel)
            if wants_foreground(job):
                metadata.update(foreground=job.foreground, premultiplied=job.premultiplied,
                                foreground_params=engine.foreground_params())
            os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            write_alpha(out_path, alpha, plate, layer=job.layer, compression=job.compression,
                        half=job.half, metadata=metadata, bit_depth=job.bit_depth,
                        plate_channels=not job.alpha_only,
                        channels=channels)
        except Cancelled:
            result.cancelled = True
            break
        except HDMattError as exc:
            _with_frame(exc, frame)
            # listed under its frame (the summary, the JSON event, the Nuke node)
            result.failed[frame] = exc.one_line(with_frame=frame is None)
            fatal = plan.is_still or isinstance(exc, FATAL_AT_ANY_FRAME) or (
                isinstance(exc, FATAL_ERRORS) and not result.done)
            reporter.frame_failed(frame, result.failed[frame], said_elsewhere=fatal)
            if fatal:
                raise
            continue
        result.done.append(frame)
        if cached:
            result.cached.append(frame)
        # which weights made it: the Nuke node records this to tell when its alpha is stale
        reporter.frame_done(frame, output=out_path, cached=cached,
                            weights=str(getattr(engine, "weights_path", None) or ""),
                            weights_sha256=stamp["weights_sha256"])
    return result


def report_shot_done(reporter, result: ShotResult, error: str | None = None) -> None:
    """The run's last JSON record, however it ended (``error``: the line that ended it)."""
    reporter.shot_done(done=result.done, failed=sorted(result.failed, key=_order),
                       cancelled=result.cancelled, error=error)


def _order(frame):
    return -1 if frame is None else frame


def summarize(result: ShotResult) -> str:
    """One line for the end of a run: counts and the failed frames in range syntax."""
    parts = [f"{len(result.done)} frame(s) written"]
    if result.cached:
        parts.append(f"{len(result.cached)} from cache")
    if result.failed:
        failed = [f for f in result.failed if f is not None]
        parts.append(f"{len(result.failed)} failed: {format_frames(failed) if failed else 'still'}")
    if result.cancelled:
        parts.append("cancelled")
    return ", ".join(parts)
