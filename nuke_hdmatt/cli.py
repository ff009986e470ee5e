"""The ``hdmatt`` command line.

    hdmatt matte plate.####.exr trimap.####.exr -o alpha.####.exr --frames 1001-1100
    hdmatt demo [-o DIR]
    hdmatt info alpha.1001.exr
    hdmatt cache ls | clear | gc --max-size 10G
    hdmatt farm openjd plate.####.exr trimap.####.exr -o alpha.####.exr --frames 1001-1100 > job.yaml
    hdmatt eval ... / hdmatt train ... / hdmatt farm nuke ...

Exit codes: 0 every frame done; 1 some frames failed (listed); 2 usage or input error (one
line ``hdmatt: error: ...``); 3 an internal error (a bug); 130 stopped by Ctrl-C, 143 by
SIGTERM (finished frames kept, no temp files).

torch is imported only by commands that run the network (``matte``, ``demo``), so ``info``,
``cache`` and ``farm`` start instantly and work without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from . import ENGINE_VERSION
from .engine.settings import (
    DEFAULT_SNAP,
    FIXED_DETAIL,
    MAX_SNAP,
    PRECISIONS,
    PRIOR_CHOICES,
    InferenceSettings,
    check_device,
)
from .errors import EXIT_FAILED_FRAMES, EXIT_OK, UsageError, run_reporting
from .errors import ArgumentParser as Parser
from .exposure import exposure_value
from .farm.openjd import TIMEOUT_HELP
from .shot.workflow import MAX_THREADS, check_threads, setup_logging

# Sub-commands implemented elsewhere and dispatched with the rest of the command line.
DELEGATED = {
    "eval": ("nuke_hdmatt.evaluation", "main", "evaluate alphas against ground truth"),
    "train": ("nuke_hdmatt.training.cli", "main", "train HDMatt weights"),
}
FARM_DELEGATED = {
    "nuke": ("nuke_hdmatt.farm.nuke_job", "main", "farm job for a Nuke script's HDMatt nodes"),
}

# Matte options a farm task must not inherit: the template sets the frames per chunk, and a
# JSON log path would be shared by every task.
NOT_PASSED_TO_FARM = {"frames", "json_log"}
PATH_OPTIONS = {"ocio", "trimap_from_matte", "weights", "cache"}


def add_shot_paths(p: argparse.ArgumentParser) -> None:
    """PLATE [TRIMAP] -o OUT, shared by ``matte`` and ``farm openjd``."""
    p.add_argument("plate", metavar="PLATE", help="plate file or sequence (plate.####.exr)")
    p.add_argument("trimap", metavar="TRIMAP", nargs="?",
                   help="trimap file or sequence (omit with --trimap-from-matte)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="alpha output: .exr (plate channels kept, alpha added), .png/.tif (alpha only)")


def add_matte_options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Options shared by ``matte`` and ``farm openjd``; returns their actions.

    All default to None/False, so :func:`matte_argv` can pass on exactly what the user typed.
    """
    before = set(p._option_string_actions.values())
    io = p.add_argument_group("input and output")
    io.add_argument("--frames", help="frames to run: 1001-1100, 1001-1100x2, 1,5,10-12 "
                    "(default: the plate sequence's frames on disk)")
    io.add_argument("--plate-channels", metavar="R,G,B",
                    help="plate channels to matte, by name (default R,G,B)")
    io.add_argument("--part", metavar="NAME|N",
                    help="EXR part of a multi-part plate to matte, by name (a stereo file's "
                    "right) or number (0 = first), and the trimap's (or matte's) part of that name; "
                    "a trimap of one part serves every part (default: the first part holding "
                    "the plate channels)")
    io.add_argument("--trimap-channel", metavar="C",
                    help="trimap (or matte) channel (default: first of A, R, Y; of a "
                    "--trimap-from-matte matte: A, Y, R)")
    io.add_argument("--trimap-from-matte", metavar="MATTE",
                    help="make the trimap from this matte/roto alpha instead of TRIMAP")
    io.add_argument("--band", type=int, metavar="N",
                    help="with --trimap-from-matte: unknown band half-width in pixels, at "
                    "most the frame's larger side (default 16)")
    io.add_argument("--layer", metavar="rgba|NAME",
                    help="EXR output: 'rgba' writes channel A, NAME writes NAME.alpha (default rgba)")
    io.add_argument("--compression", metavar="NAME", help="output compression (default zip)")
    io.add_argument("--float", dest="float_alpha", action="store_true",
                    help="EXR output: store alpha as 32-bit float instead of half")
    io.add_argument("--alpha-only", action="store_true",
                    help="EXR output: the alpha (and foreground) channels alone, over the "
                    "plate's data and display windows, without copying the plate's channels "
                    "and parts")
    io.add_argument("--bit-depth", type=int, choices=(8, 16),
                    help="PNG/TIFF output bit depth (default 8)")
    io.add_argument("--foreground", nargs="?", const="fg", metavar="LAYER",
                    help="EXR output: also write the estimated unpremultiplied foreground "
                    "colour as LAYER.R/G/B (default fg), in the plate's colour space")
    io.add_argument("--premultiplied", action="store_true",
                    help="EXR output: write alpha x foreground into the alpha layer's R, G, B "
                    "(a ready element; PNG/TIFF outputs refuse both options)")
    colour = p.add_argument_group("colour")
    colour.add_argument("--exposure", type=_exposure, metavar="fit|off|STOPS",
                        help="fit (default): each frame's exposure fitted to its unknown band "
                        "for the network, darker where it holds highlights above display white "
                        "(hair over a bright sky is not clipped into it), brighter where it "
                        "stays below half of white (night plates); off: every frame as it is; "
                        "STOPS: every frame's exposure changed by that much, negative darker "
                        "(one exposure for a shot whose band's brightness comes and goes)")
    colour.add_argument("--plate-colorspace", metavar="NAME",
                        help="plate colour space in the OCIO config (default: file metadata, "
                        "else the linear space an EXR's chromaticities name, else scene_linear "
                        "for EXR and float files / sRGB for 8-16 bit files)")
    colour.add_argument("--ocio", metavar="CONFIG",
                        help="OCIO config file or ocio:// URI (default $OCIO, else built-in cg config)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--weights", metavar="FILE",
                     help="weights .safetensors (default $HDMATT_WEIGHTS, else the weights "
                     "shipped in the package)")
    eng.add_argument("--device", metavar="auto|cpu|cuda", help="compute device (default auto)")
    eng.add_argument("--patch", type=int, metavar="N",
                     help="patch size in pixels, a multiple of 8 up to 1024 (default 320)")
    eng.add_argument("--overlap", type=int, metavar="N", help="patch overlap in pixels (default 32)")
    eng.add_argument("--k", type=int, metavar="N", help="context patches per query (default 3)")
    eng.add_argument("--pool", type=int, metavar="N", help="context candidate pool (default 30)")
    eng.add_argument("--prior", choices=PRIOR_CHOICES,
                     help="prior for prior-input weights: global = the classical solve "
                          "(the PyMatting solvers the weights name) at <= 1024 px, "
                          "upsampled; cascade = the network's own alpha at <= 1024 px, "
                          "guided-upsampled, refined at full resolution by --detail; "
                          "local = classical solve per patch; none = weights without a "
                          "prior input (default auto: cascade)")
    eng.add_argument("--detail", type=detail_value, metavar="auto|F",
                     help="with the cascade prior on frames over 1024 px: how far the "
                          "full-resolution pass moves the guided-upsampled 1024 px alpha "
                          "(0 = the 1024 px alpha alone, faster; 1 = the full-resolution "
                          "pass whole; default auto: a step per pixel predicted by the "
                          f"detail model fitted to the weights, {FIXED_DETAIL} for weights "
                          "without one)")
    eng.add_argument("--precision", choices=PRECISIONS,
                     help="inference precision (default auto: fp16 on CUDA; bf16 on CPUs "
                          "with native bf16 (AVX512-BF16, AMX), else fp32)")
    eng.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                     help="on frames within 1024 px and in the cascade's 1024 px pass, one "
                          "network pass instead of the mean of the frame's and its mirror "
                          "image's alphas (faster, a slightly worse alpha)")
    eng.add_argument("--snap", type=float, metavar="F",
                     help="unknown-band alpha within F of 0 or 1 becomes exactly 0 or 1, "
                          f"0 to {MAX_SNAP} (0 = off; default {DEFAULT_SNAP}: no faint veil "
                          "over solid foreground or background)")
    eng.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for the engine and image files, 1 to "
                          f"{MAX_THREADS} (default: torch's, one per core; farm tasks "
                          "sharing a machine give their share)")
    run = p.add_argument_group("cache and logging")
    cache = run.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="DIR",
                       help="per-frame cache folder (default $HDMATT_CACHE, else "
                       "$XDG_CACHE_HOME/hdmatt or ~/.cache/hdmatt)")
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--json-log", metavar="FILE", help="append JSON-lines progress events to FILE")
    return [a for a in dict.fromkeys(p._option_string_actions.values()) if a not in before]


def matte_argv(args: argparse.Namespace, actions: list[argparse.Action]) -> list[str]:
    """The matte options the user gave, as command-line words (for farm task commands).

    Path options are made absolute: a farm task runs in its own working folder.
    """
    words: list[str] = []
    for action in actions:
        dest, flag = action.dest, action.option_strings[-1]
        value = getattr(args, dest, None)
        # (a flag's value is its default unless given: False for --no-cache, None for
        # --no-flip, whose const is False)
        if dest in NOT_PASSED_TO_FARM or value is None or value == action.default:
            continue
        if action.nargs == 0:
            words.append(flag)
            continue
        # (a cache under "~" is the worker's home, as hdmatt matte reads it there)
        if dest in PATH_OPTIONS and not str(value).startswith(("ocio://", "~")):
            value = os.path.abspath(value)
        # a value that starts with "-" (--exposure -1e-05) as one word, or argparse reads
        # it as an option
        words += [f"{flag}={value}"] if str(value).startswith("-") else [flag, str(value)]
    return words


def run_settings(args: argparse.Namespace):
    """The :class:`~nuke_hdmatt.shot.workflow.RunSettings` of parsed ``matte``/``demo`` options."""
    from .shot.workflow import RunSettings
    return RunSettings(engine=engine_kwargs(args), cache=getattr(args, "cache", None),
                       no_cache=bool(args.no_cache), quiet=bool(args.quiet),
                       json_log=args.json_log, threads=getattr(args, "threads", None))


def _exposure(text: str) -> str:
    try:
        return exposure_value(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def detail_value(text: str) -> float | str:
    """``--detail``: ``auto`` or a number (its range is the settings' to check)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give auto or a number from 0 to 1") from None


def engine_kwargs(args: argparse.Namespace) -> dict:
    """Engine.load keyword arguments: the weights and device the user gave, and the
    :class:`InferenceSettings` of the options given (the others at their defaults)."""
    kw = {name: getattr(args, name) for name in ("weights", "device")
          if getattr(args, name, None) is not None}
    kw["settings"] = InferenceSettings.from_options(vars(args))
    return kw


def check_engine_options(args: argparse.Namespace) -> None:
    """The inference settings within their bounds and the device a name the engine knows,
    before torch loads (stdlib only)."""
    if getattr(args, "device", None) is not None:
        try:
            check_device(args.device)
        except ValueError as exc:
            raise UsageError(f"--device: {exc}") from None
    try:
        InferenceSettings.from_options(vars(args))
    except ValueError as exc:
        hint = " (the default; give --overlap)" if "--overlap" in str(exc) and \
            getattr(args, "overlap", None) is None else ""
        raise UsageError(f"{exc}{hint}") from None


def resolve_weights(args: argparse.Namespace) -> None:
    """Set ``args.weights`` to the file to load: ``--weights``, else ``$HDMATT_WEIGHTS``, else
    the weights shipped in the package. No file there is a usage error naming where it looked
    (never an untrained network)."""
    from .engine.weights import BUNDLED_WEIGHTS  # no torch
    from .errors import WeightsError
    if args.weights is not None:
        if not args.weights.strip():
            raise UsageError("--weights is empty")
        return
    env = os.environ.get("HDMATT_WEIGHTS")
    if env:
        if not os.path.isfile(env):
            raise WeightsError("weights file named by $HDMATT_WEIGHTS not found", path=env)
        args.weights = env
    elif BUNDLED_WEIGHTS.is_file():
        args.weights = str(BUNDLED_WEIGHTS)
    else:
        raise WeightsError(f"no weights found: no --weights, $HDMATT_WEIGHTS unset, and none "
                           f"shipped at {BUNDLED_WEIGHTS} (reinstall, or give --weights FILE)")


def matte_job_from_args(args: argparse.Namespace):
    """Build a :class:`~nuke_hdmatt.shot.plan.MatteJob` from parsed ``matte`` arguments."""
    from .imaging.plates import parse_channels
    from .sequence import FrameCountError, input_sequence, parse_frames
    from .shot.plan import MatteJob, frames_found

    _check_not_empty(args)
    job = MatteJob(plate=args.plate, trimap=args.trimap, output=args.output)
    if args.frames is not None:
        try:
            job.frames = parse_frames(args.frames)
        except FrameCountError as exc:
            seqs = [input_sequence(p) for p in (args.plate, args.trimap or args.trimap_from_matte)
                    if p and input_sequence(p).is_sequence]
            raise UsageError(exc.message + (f"; there are {frames_found(seqs[0])}" if seqs
                                            else "")) from None
    if args.plate_channels:
        job.plate_channels = tuple(parse_channels(args.plate_channels))
    for dest in ("trimap_channel", "trimap_from_matte", "plate_colorspace", "ocio", "layer",
                 "compression", "bit_depth", "band", "foreground", "exposure", "part"):
        if getattr(args, dest) is not None:
            setattr(job, dest, getattr(args, dest))
    if args.band is not None and not args.trimap_from_matte:
        raise UsageError("--band only applies with --trimap-from-matte")
    if args.band is not None and args.band < 0:
        raise UsageError(f"--band must be 0 or more pixels, got {args.band}")
    check_threads(args.threads)
    _check_format_options(args)
    job.half = not args.float_alpha
    job.alpha_only = args.alpha_only
    check_engine_options(args)
    job.premultiplied = bool(getattr(args, "premultiplied", False))
    return job


def _check_format_options(args: argparse.Namespace) -> None:
    """An option of another output format is a mistake, not a no-op: ``--bit-depth 16``
    on an EXR would still write half, ``--float`` on a PNG 8 bits."""
    from .imaging.writing import output_format
    fmt = output_format(args.output)
    if fmt == "openexr" and args.bit_depth is not None:
        raise UsageError(f"--bit-depth applies to PNG/TIFF outputs; {args.output} is EXR "
                         "(half float; --float for 32-bit float)")
    if fmt != "openexr" and args.float_alpha:
        raise UsageError(f"--float applies to EXR outputs; {args.output} is {fmt.upper()} "
                         "(--bit-depth 16 for 16 bits)")
    if fmt != "openexr" and args.alpha_only:
        raise UsageError(f"--alpha-only applies to EXR outputs; {args.output} is {fmt.upper()} "
                         "(it holds the alpha alone already)")
    if fmt != "openexr" and args.layer not in (None, "rgba"):
        raise UsageError(f"--layer {args.layer} applies to EXR outputs; {args.output} is "
                         f"{fmt.upper()} (its one channel is the alpha)")


def _check_not_empty(args: argparse.Namespace) -> None:
    """An empty path or name (``--cache ""`` from an unset shell variable) is a mistake, not
    "the current folder" or "the default"."""
    names = {"plate": "PLATE", "trimap": "TRIMAP", "output": "-o", "output_dir": "-o"}
    for dest in ("plate", "trimap", "output", "output_dir", "trimap_from_matte",
                 "plate_channels", "part", "trimap_channel", "layer", "compression", "foreground",
                 "plate_colorspace", "ocio", "weights", "device", "cache", "json_log",
                 "hdmatt", "name", "job_output", "bundle"):
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            raise UsageError(f"{names.get(dest, '--' + dest.replace('_', '-'))} is empty")


def cmd_info(args: argparse.Namespace) -> int:
    from .imaging import describe_image, read_hdmatt_metadata
    path = args.file
    if str(path).lower().endswith(".safetensors"):
        return _weights_info(path, args.json)
    from .sequence import input_sequence
    seq = input_sequence(path)
    if seq.is_sequence:
        if args.frame is None:
            raise UsageError("is a frame sequence: give --frame N", path=path)
        path = seq.path(args.frame)
    desc = describe_image(path)
    stamp = read_hdmatt_metadata(path)
    if args.json:
        print(json.dumps({**desc, "hdmatt": stamp}, indent=2, default=str))
        return EXIT_OK
    print(f"{desc['path']}  ({desc['format']})")
    for part in desc["subimages"]:
        name = f" '{part['name']}'" if part.get("name") else ""
        print(f"  part {part['index']}{name}: channels {', '.join(part['channels'])}")
        print("    layers " + ", ".join(f"{layer} ({', '.join(chans)})"
                                      for layer, chans in part["layers"].items()))
        print(f"    data window {_window(part['data_window'])}, display window "
              f"{_window(part['display_window'])}")
        print(f"    colour space {part['colorspace'] or '(not stated)'}, compression "
              f"{part['compression'] or '-'}")
    if stamp:
        print("  made by hdmatt:")
        for key in sorted(stamp):
            value = stamp[key]
            if isinstance(value, (dict, list)):
                value = json.dumps(value, sort_keys=True)
            print(f"    {key}: {value}")
    return EXIT_OK


def _weights_info(path: str, as_json: bool) -> int:
    """``hdmatt info FILE.safetensors``: the configuration and training record in its header,
    its sha256 against the one recorded beside it, and its detail model (no torch)."""
    from pathlib import Path

    from .engine.weights import file_sha256, header_metadata
    meta = header_metadata(path)
    config = json.loads(meta.get("config", "{}"))
    info = json.loads(meta.get("info", "{}"))
    sha = file_sha256(Path(path))
    record = Path(path + ".sha256")
    recorded = record.read_text().split()[0].lower() if record.is_file() else None
    detail = Path(path + ".detail.json")
    out = {"path": path, "format": meta.get("format"), "sha256": sha,
           "sha256_recorded": recorded, "config": config, "info": info,
           "detail_model": str(detail) if detail.is_file() else None}
    if as_json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    check = ("" if recorded is None else
             " (matches its .sha256)" if recorded == sha else " (DIFFERS from its .sha256)")
    print(f"{path}  (HDMatt weights, {meta.get('format')})")
    print(f"  sha256 {sha}{check}")
    print("  variant {variant}, prior solver {prior_solver}, blocks {blocks}, width {width}, "
          "K {k}".format(**{k: config.get(k, "?") for k in
                             ("variant", "prior_solver", "blocks", "width", "k")}))
    for key in sorted(info):
        print(f"  {key}: {json.dumps(info[key]) if isinstance(info[key], (dict, list)) else info[key]}")
    print(f"  detail model: {out['detail_model'] or 'none (a fixed cascade step)'}")
    return EXIT_OK


def _window(w) -> str:
    x, y, width, height = w
    return f"{width}x{height} at ({x}, {y})"


def cmd_cache(args: argparse.Namespace) -> int:
    from .shot.cache import FrameCache
    _check_not_empty(args)  # --cache "" would be the current folder: clear would empty it
    where = getattr(args, "cache", None)
    try:
        cache = FrameCache(where)
    except RuntimeError as exc:  # "~nosuchuser/c", or no home folder for the default
        raise UsageError(f"cache folder: {exc}", path=where or "$HDMATT_CACHE") from None
    try:
        if cache.root.exists() and not cache.root.is_dir():
            raise UsageError("cache folder: is a file, not a folder", path=str(cache.root))
        return _cache_action(args, cache)
    except OSError as exc:
        raise UsageError(f"cache folder: {exc.strerror or exc}", path=str(cache.root)) from None


def _cache_action(args: argparse.Namespace, cache) -> int:
    """Run ``cache ls|clear|gc``; 1 when entries that should have gone are still there (a
    folder this user cannot write), with one line saying so."""
    from .shot.cache import MAX_SIZE_ENV, format_size, parse_size
    if args.cache_action == "ls":
        entries = cache.entries()
        now = time.time()
        for e in entries:
            age = now - e.mtime
            frame = e.meta.get("frame")
            what = e.meta.get("plate") or ""
            print(f"{e.key[:16]}  {format_size(e.size):>7}  {_age(age):>6} ago  "
                  f"{'' if frame is None else f'frame {frame}  '}{what}")
        total = sum(e.size for e in entries)
        cap = format_size(cache.max_bytes) if cache.max_bytes else "none"
        print(f"{len(entries)} entries, {format_size(total)} in {cache.root} (limit {cap}, "
              f"${MAX_SIZE_ENV})" + ("" if cache.root.is_dir() else "; no such folder"),
              file=sys.stderr)
    elif args.cache_action == "clear":
        n = cache.clear()
        print(f"removed {n} entries from {cache.root}", file=sys.stderr)
        left = len(cache.entries())
        if left:
            print(f"hdmatt: warning: {left} entries could not be removed from {cache.root} "
                  "(no permission to write there?)", file=sys.stderr)
            return EXIT_FAILED_FRAMES
    elif args.cache_action == "gc":
        try:
            limit = cache.max_bytes if args.max_size is None else parse_size(args.max_size)
        except UsageError as exc:
            raise UsageError(f"--max-size: {exc.message}") from None
        if not limit and args.max_size is not None:
            # 0 is "no limit" in $HDMATT_CACHE_MAX_SIZE: one word never means both
            raise UsageError("--max-size 0: use 'hdmatt cache clear' to delete every entry "
                             f"(0 means no limit in ${MAX_SIZE_ENV})")
        if not limit:
            print(f"no limit (${MAX_SIZE_ENV}=0): nothing to trim in {cache.root}", file=sys.stderr)
            return EXIT_OK
        removed, freed = cache.gc(limit)
        left = cache.size_bytes()
        print(f"removed {removed} least recently used entries ({format_size(freed)}); "
              f"{format_size(left)} left in {cache.root}", file=sys.stderr)
        if left > limit:
            print(f"hdmatt: warning: {cache.root} is still over {format_size(limit)}: entries "
                  "could not be removed (no permission to write there?)", file=sys.stderr)
            return EXIT_FAILED_FRAMES
    return EXIT_OK


def _age(seconds: float) -> str:
    from .shot.progress import format_duration
    if seconds >= 86400:
        return f"{int(seconds // 86400)}d"
    return format_duration(seconds)


def cmd_matte(args: argparse.Namespace) -> int:
    from .shot.workflow import run_matte
    resolve_weights(args)
    job = matte_job_from_args(args)
    return run_matte(job, run_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    _check_not_empty(args)
    resolve_weights(args)  # before the demo writes its plate
    return run_demo(args.output_dir, run_settings(args))


# what the submitting machine's environment decides about an alpha, and a worker's may not
# have: the tasks get it as options (the cache only changes speed, and is the worker's own)
SUBMIT_ENVIRONMENT = (("OCIO", "ocio", "--ocio"), ("HDMATT_WEIGHTS", "weights", "--weights"))


def submit_environment(args: argparse.Namespace) -> list[str]:
    """Options for the tasks from ``$OCIO`` and ``$HDMATT_WEIGHTS`` where the command line
    gave none: the checks here used them, so the workers must too. Sets them on ``args``."""
    words: list[str] = []
    for var, dest, flag in SUBMIT_ENVIRONMENT:
        value = os.environ.get(var)
        if value and not getattr(args, dest, None):
            if not value.startswith("ocio://"):
                value = os.path.abspath(value)
            setattr(args, dest, value)
            words += [flag, value]
            print(f"hdmatt: the tasks get {flag} {value} (${var} here)", file=sys.stderr)
    return words


def cmd_farm_openjd(args: argparse.Namespace) -> int:
    from .farm.openjd import checked_timeout, gpus_for, job_template, template_text
    from .sequence import format_frames
    from .shot.matte import make_folder, preflight, remove_created
    from .shot.plan import plan_frames
    if args.timeout is not None:
        checked_timeout(args.timeout)
    if args.trimap is None and not args.trimap_from_matte:
        raise UsageError("a trimap is needed: TRIMAP or --trimap-from-matte MATTE")
    if args.frames is None:
        raise UsageError("farm openjd needs --frames A-B")
    if args.bundle and os.path.exists(args.bundle) and not os.path.isdir(args.bundle):
        raise UsageError("--bundle: is a file, not a folder", path=args.bundle)
    if args.json_log:
        raise UsageError("--json-log: not for farm openjd (each task logs to the farm's task "
                         "log)")
    # every task runs `hdmatt matte`: refuse now what each of them would refuse
    job = matte_job_from_args(args)
    plan = plan_frames(job)
    if plan.is_still:
        raise UsageError("farm openjd needs frame sequences (plate.####.exr) and --frames")
    # the options given, then those the environment pins (each once: pinning sets them on args)
    given = matte_argv(args, args.matte_actions)
    pinned = submit_environment(args)
    if args.weights:
        from .engine.weights import verified_sha256  # no torch: the file and its .sha256
        verified_sha256(args.weights)
    created = preflight(job, plan)
    try:
        template = job_template(plate=args.plate, trimap=args.trimap, output=args.output,
                                frames=plan.frames, chunk=args.chunk,
                                extra_args=given + pinned,
                                executable=args.hdmatt, name=args.name,
                                gpus=gpus_for(args.device), timeout=args.timeout)
    except BaseException:
        remove_created(created)
        raise
    target = args.job_output
    if args.bundle:
        target = os.path.join(args.bundle, "template.yaml")
    text = template_text(template, target)
    if plan.missing:
        print(f"hdmatt: warning: {len(plan.missing)} of the {len(plan.frames)} frame(s) lack an "
              f"input on disk now ({format_frames(plan.missing)}; frame "
              f"{min(plan.missing)}: {plan.missing[min(plan.missing)]}): their tasks fail "
              "unless the files are there when they run", file=sys.stderr)
    if target and target != "-":
        from .sequence import FrameSequence, input_sequence
        from .shot.plan import overwritten_input
        clash = overwritten_input(FrameSequence(target), [input_sequence(p) for p in (
            job.plate, job.trimap or job.trimap_from_matte)], plan.frames)
        if clash:
            remove_created(created)
            raise UsageError(f"the job template would overwrite an input ({clash[1]})",
                             path=target)
    if args.bundle:
        # a Deadline Cloud job bundle is a folder holding template.yaml
        try:
            created = make_folder(os.path.abspath(args.bundle)) + created
        except OSError as exc:
            remove_created(created)
            raise UsageError(f"--bundle: cannot create the folder: {exc.strerror or exc}",
                             path=args.bundle) from None
    if target and target != "-":
        from .farm.openjd import write_template
        try:
            write_template(target, text)
        except BaseException:
            remove_created(created)
            raise
        print(f"hdmatt: wrote {target}", file=sys.stderr)
        if args.bundle:
            print(f"hdmatt: submit with: deadline bundle submit {shlex.quote(args.bundle)}",
                  file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="hdmatt", description="High-resolution deep image matting (HDMatt): plate + "
        "trimap -> alpha, per shot, on a workstation or a render farm.",
        epilog="exit codes: 0 done, 1 some frames failed, 2 usage/input error, 3 internal "
        "error (HDMATT_DEBUG=1 for the traceback), 130 Ctrl-C, 143 SIGTERM")
    ap.add_argument("--version", action="version", version=f"hdmatt {ENGINE_VERSION}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser("matte", help="alpha for a plate (single file or sequence) and its trimap",
                       description="Matte PLATE with TRIMAP and write the alpha to OUT. Paths are "
                       "single files or sequences (plate.####.exr, plate.%04d.exr, plate.@@@@.exr).")
    add_shot_paths(m)
    add_matte_options(m)
    m.set_defaults(func=cmd_matte)

    d = sub.add_parser("demo", help="run the whole chain on a generated hair plate")
    d.add_argument("-o", "--output-dir", default="hdmatt_demo", metavar="DIR",
                   help="where the plate, trimap, alpha and preview go (default ./hdmatt_demo)")
    d.add_argument("--weights", metavar="FILE", help="network weights (default: the bundled)")
    d.add_argument("--device", metavar="auto|cpu|cuda", help="compute device (default auto)")
    d.add_argument("--cache", metavar="DIR", help="frame cache folder (as for matte)")
    d.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--json-log", metavar="FILE",
                   help="append JSON-lines progress events to FILE")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="channels, windows, colour space; the stamp of our outputs")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--frame", type=int, help="frame of a sequence pattern")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info)

    cache_opt = Parser(add_help=False)
    cache_opt.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS,
                           help="cache folder (default $HDMATT_CACHE, else $XDG_CACHE_HOME/hdmatt "
                           "or ~/.cache/hdmatt)")
    c = sub.add_parser("cache", parents=[cache_opt], help="list, clear or trim the per-frame cache")
    csub = c.add_subparsers(dest="cache_action", metavar="ACTION")
    csub.required = True
    csub.add_parser("ls", parents=[cache_opt], help="list entries, least recently used first")
    csub.add_parser("clear", parents=[cache_opt], help="delete every entry")
    gc = csub.add_parser("gc", parents=[cache_opt], help="delete least recently used entries")
    gc.add_argument("--max-size", metavar="SIZE",
                    help="e.g. 500M, 10G (default: the limit runs keep, "
                         "$HDMATT_CACHE_MAX_SIZE else 50G, where 0 means no limit; "
                         "'cache clear' deletes every entry)")
    c.set_defaults(func=cmd_cache)

    f = sub.add_parser("farm", help="render-farm job descriptions")
    fsub = f.add_subparsers(dest="farm_command", metavar="KIND")
    fsub.required = True
    o = fsub.add_parser("openjd", help="Open Job Description template (AWS Deadline Cloud)",
                        description="Print an Open Job Description job template whose chunked "
                        "tasks run 'hdmatt matte' on their frames.")
    add_shot_paths(o)
    o.add_argument("--chunk", type=int, default=10, metavar="N", help="frames per task (default 10)")
    o.add_argument("--hdmatt", metavar="PATH", help="hdmatt executable on the farm "
                   "(default: this one, absolute)")
    o.add_argument("--name", help="job name (default: hdmatt <plate file name>)")
    o.add_argument("--timeout", type=int, metavar="SECONDS", help=TIMEOUT_HELP)
    out = o.add_mutually_exclusive_group()
    out.add_argument("--job-output", metavar="FILE", help="write the template here instead of stdout")
    out.add_argument("--bundle", metavar="DIR", help="write a Deadline Cloud job bundle "
                     "(DIR/template.yaml) for 'deadline bundle submit DIR'")
    o.set_defaults(func=cmd_farm_openjd, matte_actions=add_matte_options(o))
    for name, (_, _, help_text) in FARM_DELEGATED.items():
        fsub.add_parser(name, help=help_text, add_help=False)

    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return ap


def _delegate(module: str, func: str, argv: list[str]) -> int:
    import importlib
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise UsageError(f"this command is not available in this install ({module} missing)")
        raise
    rc = getattr(mod, func)(argv)
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hdmatt`` console script; returns the exit code."""
    from .stop_signals import install_stop_handlers, restore_handlers
    previous = install_stop_handlers()
    try:
        return _main(argv)
    finally:
        restore_handlers(previous)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        _import_native_modules()
        setup_logging()  # every command's library warnings: one "hdmatt: warning:" line each
        # Delegated commands parse their own options; argparse would reject them here.
        if argv and argv[0] in DELEGATED:
            module, func, _ = DELEGATED[argv[0]]
            return _delegate(module, func, argv[1:])
        if len(argv) >= 2 and argv[0] == "farm" and argv[1] in FARM_DELEGATED:
            module, func, _ = FARM_DELEGATED[argv[1]]
            return _delegate(module, func, argv[2:])
        args = build_parser().parse_args(argv)
        return args.func(args)

    return run_reporting("hdmatt", body, report_bugs=True)


def _import_native_modules() -> None:
    """OpenImageIO first, with Ctrl-C held back while its bindings initialise (0.05 s): a
    Ctrl-C just then aborted the process (:func:`.stop_signals.deferred_stop_signals`)
    instead of exit 130. Missing here, the command that needs it says so."""
    from .stop_signals import deferred_stop_signals
    with deferred_stop_signals():
        try:
            import OpenImageIO  # noqa: F401
        except ImportError:
            pass


if __name__ == "__main__":
    sys.exit(main())
