"""A 6K frame through ``hdmatt matte``: the time outside the engine, against another commit.

The 6K timing frame (``hr_composites.frame_6k``, 10 % unknown) written as a half-float
ACEScg EXR plate with an 8-bit trimap and a hard roto matte (its alpha above one half), then
matted on the command line (``--no-cache``, default settings; the trimap, the trimap with
``--foreground``, and ``--trimap-from-matte``, band 16) by this checkout and by a git
worktree of ``--against``, interleaved. From each run's JSON log: before the network (reading,
colour, the exposure fit, the coarse prior), the network's counted steps, and after them
(the detail blend, the foreground, writing the EXR); the process's wall time besides.

    .venv/bin/python -m benchmarks.frame_host --against 3765709 [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .report import REPO, machine_info, machine_line, markdown_table, publish


def write_inputs(folder: Path) -> None:
    """The 6K frame as ``plate.exr`` (ACEScg, half), ``trimap.png`` and ``matte.exr`` in
    ``folder``."""
    import OpenImageIO as oiio

    from nuke_hdmatt.imaging.colour import resolve_config, to_scene_linear

    from .hr_composites import frame_6k
    frame = frame_6k("GT24")
    config, _ = resolve_config(None)
    linear = to_scene_linear(frame.image, "srgb_tx", config)          # ACEScg
    plate, trimap = folder / "plate.exr", folder / "trimap.png"
    spec = oiio.ImageSpec(linear.shape[1], linear.shape[0], 3, "half")
    spec.attribute("oiio:ColorSpace", "ACEScg")
    spec.attribute("compression", "zip")
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(oiio.ROI(), linear)
    codes = np.ascontiguousarray((frame.trimap * 255).round().astype(np.uint8)[..., None])
    tri = oiio.ImageBuf(oiio.ImageSpec(codes.shape[1], codes.shape[0], 1, "uint8"))
    tri.set_pixels(oiio.ROI(), codes)
    hard = np.ascontiguousarray((frame.alpha > 0.5).astype(np.float32)[..., None])
    matte = oiio.ImageBuf(oiio.ImageSpec(hard.shape[1], hard.shape[0], 1, "half"))
    matte.set_pixels(oiio.ROI(), hard)
    matte.specmod().channelnames = ("A",)
    if not (buf.write(str(plate)) and tri.write(str(trimap))
            and matte.write(str(folder / "matte.exr"))):
        raise RuntimeError(f"cannot write the inputs: {oiio.geterror()}")


#: (name, the command's trimap part): the trimap, with a foreground, a roto matte
INPUTS = (("trimap", ["trimap.png"]), ("trimap, foreground", ["trimap.png", "--foreground"]),
          ("roto matte", ["--trimap-from-matte", "matte.exr"]))


def run(source: Path, folder: Path, inputs: list[str], threads: int) -> dict:
    """One ``hdmatt matte`` of ``folder``'s plate with ``inputs`` (an :data:`INPUTS` entry's
    arguments, file names within ``folder``) by the package in ``source``; seconds by part."""
    log = folder / "run.jsonl"
    log.unlink(missing_ok=True)
    out = folder / "alpha.exr"
    given = [str(folder / a) if a.endswith((".png", ".exr")) else a for a in inputs]
    cmd = [sys.executable, "-m", "nuke_hdmatt.cli", "matte", str(folder / "plate.exr"),
           *given, "-o", str(out), "--no-cache", "--quiet", "--threads", str(threads),
           "--json-log", str(log)]
    env = {**os.environ, "PYTHONPATH": str(source)}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=source, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    start = next(e["t"] for e in events if e["event"] == "frame_start")
    done = next(e["t"] for e in events if e["event"] == "frame_done")
    steps = [e["t"] for e in events if e["event"] == "progress"
             and e.get("stage") in ("coarse patches", "patches")]
    return {"wall": wall, "frame": done - start, "before": steps[0] - start,
            "network": steps[-1] - steps[0], "after": done - steps[-1]}


def worktree(rev: str, folder: Path) -> Path:
    path = folder / "then"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=REPO,
                   check=True, capture_output=True)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from . import hr_composites
    if not hr_composites.data_available():
        print("frame_host: ../shared/data not found", file=sys.stderr)
        return 2
    info = machine_info(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder)
        then = worktree(args.against, folder)
        try:
            rows = []
            for inputs, given in INPUTS:
                got: dict = {"then": [], "now": []}
                for _ in range(args.repeats):
                    for name, source in (("then", then), ("now", REPO)):
                        got[name].append(run(source, folder, given, args.threads))
                        print(name, inputs, got[name][-1], flush=True)
                for name in ("then", "now"):
                    med = {k: statistics.median(r[k] for r in got[name]) for k in got[name][0]}
                    label = args.against if name == "then" else info["commit"]
                    rows.append([label, inputs, med["wall"], med["frame"], med["before"],
                                 med["network"], med["after"]])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(then)], cwd=REPO,
                           capture_output=True)
    text = (f"## Host work per frame: a 6K frame on the command line\n\n{machine_line(info)}\n\n"
            f"{__doc__.split(chr(10) + chr(10))[1]}\n\nMedians of {args.repeats} runs each, "
            "interleaved; seconds. Before commit 3765709 the engine reported its steps only as "
            "queries were decoded, not as patches were encoded: there, the first report comes "
            "a coarse batch later and the encoding after the last decode is not seen, so "
            "compare the frame and the process across it, not the split. The process holds "
            "the frame, starting Python and torch, and the preflight's read of the inputs "
            "(before the frame starts).\n\n"
            + markdown_table(["commit", "inputs", "process", "frame", "before the network",
                              "network", "after the network"], rows))
    publish("frame_host", False, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
