"""Foreground colour: re-composite over a different background, against the truth.

A composite whose foreground colour F is known (``I = aF + (1-a)B``, linear light) is matted
(the engine's alpha, and the ground-truth alpha to isolate the colour estimate), then
composited again over a *different* background with each candidate F:

  ours       the engine's foreground estimate (``Engine.foreground``, linear light);
  plate      the plate itself as F (premultiplying the plate by the alpha: what an
             alpha-only tool gives);
  pymatting  PyMatting's ``estimate_foreground_ml`` on the same linear plate and alpha.

The error is the mean absolute difference from the truth composite ``a_gt F + (1-a_gt) B2``
over the trimap's unknown region, in linear light. Frames: the 800 px alphamatting-dev
validation images (F = PyMatting's linear-light estimate on the original photo, as training
uses) and the same images' high-resolution composites (2700-3513 px, ``hr_composites``;
F = that estimate enlarged). Each over a native-pixel crop of one 6K background, and
re-composited over a crop of another.

6K timing: a synthetic 6144x3240 plate with 10 % unknown pixels (``engine_scaling``), in its
own process: the engine's alpha, then the foreground; CPU seconds (the process's, which other
processes on a shared machine do not inflate as they do wall time; the foreground's split into
user and system time) and wall seconds of each, and the process's peak RSS after each. Then
the foreground alone on the saved alpha in a fresh process, to tell a slow solve from one
slowed by the matte before it in the same process.

    .venv/bin/python -m benchmarks.foreground --quick   # 2 images at 800 px and at full size
    .venv/bin/python -m benchmarks.foreground           # the 5 validation images
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import hr_composites as hrc
from .report import MEMORY_NOTE, REPO, machine_info, machine_line, markdown_table, publish

#: Unknown band half-width at 800 px (the high-resolution frames use hr_composites.BAND).
BAND_800 = 4
METHODS = ("ours", "plate", "pymatting")


def _lin(x):
    from nuke_hdmatt.training.compositing import srgb_to_linear
    return srgb_to_linear(x)


def _background(index: int, h: int, w: int) -> np.ndarray:
    """Native-pixel centre crop (h, w) of 6K background ``index`` (sRGB 0-1)."""
    bgs = hrc.backgrounds_6k()
    bg = hrc._read_rgb(bgs[index % len(bgs)])
    y0, x0 = (bg.shape[0] - h) // 2, (bg.shape[1] - w) // 2
    return bg[y0:y0 + h, x0:x0 + w]


def frame_800(name: str, index: int) -> dict:
    from nuke_hdmatt.training.compositing import composite
    from nuke_hdmatt.training.sources import DevForegrounds
    src = DevForegrounds(hrc.dev_dir(), holdout=()).source(name, highres=False)
    fg = np.asarray(src.fg, np.float32) / 255.0
    alpha = np.asarray(src.alpha, np.float32) / 255.0
    bg = _background(index, *alpha.shape)
    return {"name": name, "image": composite(fg, bg, alpha), "alpha": alpha, "fg": fg,
            "trimap": hrc._trimap(alpha, BAND_800)}


def frame_hr(name: str, index: int, scale: int) -> dict:
    f = hrc.hr_composite(name, index=index, scale=scale)
    from nuke_hdmatt.training.resampling import reduce_blocks
    fg = hrc._foreground(name)
    if scale > 1:
        fg = reduce_blocks(fg, scale)
    return {"name": name, "image": f.image, "alpha": f.alpha, "fg": fg, "trimap": f.trimap}


def torch_threads(threads: int) -> int:
    """Set torch's CPU thread count again before a timed engine call; returns it.

    PyMatting's numba kernels (numba's OpenMP threading layer), once run in this process, leave
    the OpenMP runtime torch shares with them on ``NUMBA_NUM_THREADS`` threads: torch's
    ``set_num_threads(1)`` no longer holds. The foreground solve then runs each of its many
    small ops on a 2-thread team, and on a shared 2-core machine every op's barrier waits
    (spinning) for the thread the other processes hold: GT02 at 3278x2150 took 12.6 CPU s
    instead of 2.7 (34.7 s with one more busy process). This was the run-to-run variance of
    the first runs (the truth F and the reference method call PyMatting here; the engine's
    prior did too before it moved to torch)."""
    import torch
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def foregrounds(engine, plate_lin: np.ndarray, alpha: np.ndarray,
                threads: int = 1) -> tuple[dict, dict]:
    """Candidate F per method (linear) and CPU seconds per method."""
    from pymatting import estimate_foreground_ml
    torch_threads(threads)
    t0 = time.process_time()
    ours = engine.foreground(plate_lin, alpha)
    t1 = time.process_time()
    theirs = estimate_foreground_ml(plate_lin.astype(np.float64), alpha.astype(np.float64))
    t2 = time.process_time()
    torch_threads(threads)
    return ({"ours": ours, "plate": plate_lin, "pymatting": np.asarray(theirs, np.float32)},
            {"ours": t1 - t0, "pymatting": t2 - t1})


def recomposite_errors(frame: dict, alpha: np.ndarray, fgs: dict, new_bg_lin: np.ndarray) -> dict:
    a_gt = frame["alpha"][..., None]
    truth = a_gt * _lin(frame["fg"]) + (1 - a_gt) * new_bg_lin
    unknown = frame["trimap"] == 0.5
    a = alpha[..., None]
    return {m: float(np.abs(a * f + (1 - a) * new_bg_lin - truth)[unknown].mean())
            for m, f in fgs.items()}


def measure(engine, frame: dict, index: int, size_label: str, threads: int = 1) -> list[dict]:
    image, trimap = frame["image"], frame["trimap"]
    h, w = trimap.shape
    print(f"{frame['name']} {w}x{h} ({size_label}), {np.mean(trimap == 0.5):.1%} unknown",
          flush=True)
    plate_lin = _lin(image)
    new_bg = _lin(_background(index + 1, h, w))
    torch_threads(threads)
    t0 = time.process_time()
    net_alpha = engine.matte(image, trimap)
    matte_s = time.process_time() - t0
    rows = []
    for source, alpha in (("engine", net_alpha), ("ground truth", frame["alpha"])):
        fgs, secs = foregrounds(engine, plate_lin, alpha, threads)
        err = recomposite_errors(frame, alpha, fgs, new_bg)
        rows.append({"image": frame["name"], "size": f"{w}x{h}", "scale": size_label,
                     "unknown": float(np.mean(trimap == 0.5)), "alpha": source, "err": err,
                     "ours_s": secs["ours"], "pymatting_s": secs["pymatting"],
                     "matte_s": matte_s if source == "engine" else None})
        print(f"  alpha {source}: " + ", ".join(f"{m} {err[m] * 1e3:.2f}e-3" for m in METHODS)
              + f"  (ours {secs['ours']:.2f} s, pymatting {secs['pymatting']:.2f} s)", flush=True)
    return rows


# ---- 6K timing, in its own process ------------------------------------------------------
def _cpu_split() -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of this process so far."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _fg_stats(prefix: str, before: tuple, after: tuple, t0: float, t1: float) -> dict:
    return {f"{prefix}_s": t1 - t0, f"{prefix}_cpu_s": (after[0] + after[1]) - (before[0] + before[1]),
            f"{prefix}_user_s": after[0] - before[0], f"{prefix}_sys_s": after[1] - before[1],
            f"{prefix}_minflt": after[2] - before[2]}


def worker_6k(folder: Path, threads: int) -> int:
    """The engine's alpha, then the foreground, in one process (what ``hdmatt matte
    --foreground`` does); the alpha is saved for :func:`worker_6k_fg`."""
    import torch

    from nuke_hdmatt.engine import Engine

    from .methods import peak_rss_mib, reset_peak_rss, rss_now_mib
    torch.set_num_threads(threads)
    image, trimap = np.load(folder / "image.npy"), np.load(folder / "trimap.npy")
    engine = Engine.load(device="cpu")
    engine.foreground(np.zeros((64, 64, 3), np.float32), np.full((64, 64), 0.5, np.float32))
    reset_peak_rss()
    base = rss_now_mib()
    torch_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    alpha = engine.matte(image, trimap)
    t1, c1 = time.perf_counter(), time.process_time()
    peak_matte = peak_rss_mib()
    np.save(folder / "alpha.npy", alpha)
    reset_peak_rss()
    before_fg = rss_now_mib()
    threads_at_fg = torch.get_num_threads()
    lin = _lin(image)
    s0, w0 = _cpu_split(), time.perf_counter()
    fg = engine.foreground(lin, alpha)
    s1, w1 = _cpu_split(), time.perf_counter()
    stats = {"matte_s": t1 - t0, "matte_cpu_s": c1 - c0, "base_mib": base,
             "peak_matte_mib": peak_matte, "before_fg_mib": before_fg,
             "peak_fg_mib": peak_rss_mib(), "fg_mib": fg.nbytes / 2**20,
             "threads_at_fg": threads_at_fg, **_fg_stats("fg", s0, s1, w0, w1)}
    (folder / "stats.json").write_text(json.dumps(stats))
    return 0


def worker_6k_fg(folder: Path, threads: int) -> int:
    """The foreground alone on the saved alpha, in a fresh process (no matte before it)."""
    import torch

    from nuke_hdmatt.engine import Engine
    torch.set_num_threads(threads)
    image, alpha = np.load(folder / "image.npy"), np.load(folder / "alpha.npy")
    engine = Engine.load(device="cpu")
    engine.foreground(np.zeros((64, 64, 3), np.float32), np.full((64, 64), 0.5, np.float32))
    lin = _lin(image)
    s0, w0 = _cpu_split(), time.perf_counter()
    engine.foreground(lin, alpha)
    s1, w1 = _cpu_split(), time.perf_counter()
    (folder / "stats_fg.json").write_text(json.dumps(_fg_stats("fresh_fg", s0, s1, w0, w1)))
    return 0


def timing_6k(threads: int, fraction: float = 0.10) -> dict:
    from .engine_scaling import synthetic_plate
    bg = hrc._read_rgb(hrc.backgrounds_6k()[0])
    image, trimap, _ = synthetic_plate(6144, 3240, fraction, bg)
    print(f"6K timing: 6144x3240, {np.mean(trimap == 0.5):.1%} unknown", flush=True)
    with tempfile.TemporaryDirectory(prefix="hdmatt-fg6k-") as tmp:
        np.save(Path(tmp) / "image.npy", image)
        np.save(Path(tmp) / "trimap.npy", trimap)
        del image, trimap
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        for mode in ("--worker-6k", "--worker-6k-fg"):
            subprocess.run([sys.executable, "-m", "benchmarks.foreground", mode, tmp,
                            "--threads", str(threads)], check=True, env=env)
        stats = json.loads((Path(tmp) / "stats.json").read_text())
        stats.update(json.loads((Path(tmp) / "stats_fg.json").read_text()))
    print(f"  matte {stats['matte_cpu_s']:.1f} s CPU ({stats['matte_s']:.1f} s wall), foreground "
          f"{stats['fg_cpu_s']:.1f} s CPU (user {stats['fg_user_s']:.1f}, system "
          f"{stats['fg_sys_s']:.1f}; {stats['fg_s']:.1f} s wall), peak RSS "
          f"{stats['peak_fg_mib']:.0f} MiB; the foreground alone in a fresh process "
          f"{stats['fresh_fg_cpu_s']:.1f} s CPU", flush=True)
    return stats


# ---- report -------------------------------------------------------------------------------
def summarise(args, rows, t6k, info, total_s) -> str:
    def ratio(r, a, b):
        return r["err"][a] / r["err"][b] if r["err"][b] else None

    per_image = markdown_table(
        ["image", "size", "unknown", "alpha", "ours x1e-3", "plate x1e-3", "pymatting x1e-3",
         "ours / plate", "ours / pymatting", "ours CPU s", "pymatting CPU s", "matte CPU s"],
        [[r["image"], r["size"], f"{r['unknown']:.1%}", r["alpha"], r["err"]["ours"] * 1e3,
          r["err"]["plate"] * 1e3, r["err"]["pymatting"] * 1e3, ratio(r, "ours", "plate"),
          ratio(r, "ours", "pymatting"), r["ours_s"], r["pymatting_s"], r["matte_s"]]
         for r in rows])
    means = []
    for scale in dict.fromkeys(r["scale"] for r in rows):
        for source in ("engine", "ground truth"):
            sel = [r for r in rows if r["scale"] == scale and r["alpha"] == source]
            m = {k: float(np.mean([r["err"][k] for r in sel])) for k in METHODS}
            means.append([scale, source, len(sel), m["ours"] * 1e3, m["plate"] * 1e3,
                          m["pymatting"] * 1e3, m["ours"] / m["plate"], m["ours"] / m["pymatting"],
                          float(np.mean([r["ours_s"] for r in sel])),
                          float(np.mean([r["pymatting_s"] for r in sel]))])
    mean_table = markdown_table(
        ["frames", "alpha", "images", "ours x1e-3", "plate x1e-3", "pymatting x1e-3",
         "ours / plate", "ours / pymatting", "ours CPU s", "pymatting CPU s"], means)
    text = (f"## Foreground colour: re-composite error{' (quick)' if args.quick else ''}\n\n"
            f"{machine_line(info)}.\n\n"
            f"Images {', '.join(args.names)}: the 800 px dev composites (unknown band "
            f"{BAND_800} px) and the high-resolution composites ({hrc.BAND // args.scale} px band"
            f"{'' if args.scale == 1 else f', block-averaged by {args.scale}'}), each over a crop "
            f"of one 6K background, re-composited over a crop of another. Error = mean |comp - "
            f"truth comp| over the unknown region, linear light (x1e-3). ours = "
            f"`Engine.foreground`; plate = the plate premultiplied by the alpha (alpha-only "
            f"tools); pymatting = `estimate_foreground_ml` on the same linear plate and alpha. "
            f"The truth F is itself PyMatting's estimate on the original photo (smooth, enlarged "
            f"for the high-resolution frames), which favours smooth estimators. Times are the "
            f"process's CPU seconds (wall time on a shared machine swings with the others' load). "
            f"The foreground's gradient weight (0.1) was chosen on composites of four training "
            f"images (GT01, GT05, GT07, GT12), none of the validation images measured here. "
            f"Target: ours <= "
            f"0.6x plate and <= pymatting.\n\nMean over images:\n\n{mean_table}\n"
            f"Per image:\n\n{per_image}\n")
    if t6k:
        matte, fg = t6k["matte_cpu_s"], t6k["fg_cpu_s"]
        text += (f"6K frame (6144x3240 synthetic, 10 % unknown, CPU, {args.threads} thread(s)): "
                 f"engine alpha {matte:.1f} CPU s ({t6k['matte_s']:.1f} s wall), foreground "
                 f"{fg:.1f} CPU s (user {t6k['fg_user_s']:.1f}, system {t6k['fg_sys_s']:.1f}, "
                 f"{t6k['fg_minflt']} minor page faults; {t6k['fg_s']:.1f} s wall; "
                 f"{t6k['threads_at_fg']} torch thread(s)): +{fg / matte:.0%} on the alpha's CPU "
                 f"time, {fg / (matte + fg):.0%} of the frame's. The same foreground alone on the "
                 f"saved alpha in a fresh process: {t6k['fresh_fg_cpu_s']:.1f} CPU s (user "
                 f"{t6k['fresh_fg_user_s']:.1f}, system {t6k['fresh_fg_sys_s']:.1f}). Peak RSS "
                 f"{t6k['peak_matte_mib']:.0f}"
                 f" MiB during the alpha, {t6k['peak_fg_mib']:.0f} MiB during the foreground "
                 f"({t6k['before_fg_mib']:.0f} MiB resident before it, output "
                 f"{t6k['fg_mib']:.0f} MiB). Targets: <= 20 % more time, <= 3 GiB. "
                 f"{MEMORY_NOTE}.\n\n")
    return text + (f"Total run time {total_s:.0f} s; 1-min load at the end "
                   f"{os.getloadavg()[0]:.2f}.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="GT02 and GT24 only")
    ap.add_argument("--names", nargs="*", help="alphamatting-dev names (default: validation images)")
    ap.add_argument("--scale", type=int, default=1,
                    help="block-average the high-resolution frames by this (default 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine more threads can be "
                    "slower)")
    ap.add_argument("--no-6k", action="store_true", help="skip the 6K timing")
    ap.add_argument("--worker-6k", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--worker-6k-fg", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_6k:
        return worker_6k(Path(args.worker_6k), args.threads)
    if args.worker_6k_fg:
        return worker_6k_fg(Path(args.worker_6k_fg), args.threads)
    if not hrc.data_available():
        print("foreground: shared data not found (alphamatting-dev/alpha_highres, 6K "
              "backgrounds); nothing to do", file=sys.stderr)
        return 2
    import torch

    from nuke_hdmatt.engine import Engine
    torch.set_num_threads(args.threads)
    args.names = args.names or (["GT02", "GT24"] if args.quick else hrc.validation_names())
    info = machine_info(args.threads)
    t0 = time.time()
    engine = Engine.load(device="cpu")
    rows = []
    for i, name in enumerate(args.names):
        rows += measure(engine, frame_800(name, i), i, "800 px", args.threads)
        rows += measure(engine, frame_hr(name, i, args.scale), i, "high-res", args.threads)
    t6k = None if args.no_6k else timing_6k(args.threads)
    publish("foreground", args.quick, summarise(args, rows, t6k, info, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
