"""Tiny real image files and an ``hdmatt`` runner shared by the CLI and farm tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from imaging_fixtures import read_all
from imaging_fixtures import write_image as write_fixture

SIZE = 48
# Small patches keep every engine run on these tiny frames well under a second.
FAST = ["--patch", "32", "--overlap", "8"]


def write_image(path, pixels, channels, fmt="half"):
    """A single-part file (``channels`` like "RGB" or "Y") written straight with OpenImageIO."""
    pixels = np.asarray(pixels, np.float32)
    return write_fixture(path, pixels[..., None] if pixels.ndim == 2 else pixels,
                         tuple(channels), fmt=fmt)


def read_image(path):
    """(spec, float32 H x W x C) of the first part."""
    return read_all(path)[0]


def make_frame(seed, size=SIZE):
    """(plate HxWx3 linear, trimap HxW 0/0.5/1): a bright disc on a dark noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2 + seed % 3)
    alpha = np.clip((size * 0.3 - r) / 3 + 0.5, 0, 1)
    plate = alpha[..., None] * [0.8, 0.6, 0.4] + (1 - alpha[..., None]) * rng.uniform(0, 0.2, (size, size, 3))
    trimap = np.full((size, size), 0.5, np.float32)
    trimap[alpha > 0.99] = 1.0
    trimap[r > size * 0.3 + 6] = 0.0
    return plate.astype(np.float32), trimap


def exr_sequence(folder: Path, frames, size=SIZE):
    """plate.####.exr (R,G,B half, ACEScg by default) + trimap.####.exr (Y) for ``frames``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        plate, trimap = make_frame(f, size)
        write_image(folder / f"plate.{f:04d}.exr", plate, "RGB")
        write_image(folder / f"trimap.{f:04d}.exr", trimap, "Y")
    return str(folder / "plate.####.exr"), str(folder / "trimap.####.exr")


def hdmatt_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(HDMATT_CACHE=str(tmp_path / "default-cache"), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("HDMATT_DEBUG", None)
    env.pop("HDMATT_CACHE_MAX_SIZE", None)   # the default limit, whatever the machine says
    return env


def hdmatt(tmp_path: Path, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (``python -m nuke_hdmatt.cli``)."""
    return subprocess.run([sys.executable, "-m", "nuke_hdmatt.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=hdmatt_env(tmp_path), cwd=tmp_path, **kw)


def hdmatt_loads_torch(tmp_path: Path, *args, timeout=120) -> tuple[subprocess.CompletedProcess, bool]:
    """Run the command line like :func:`hdmatt`, in a process that then says whether torch
    was imported: (the run, True when torch was loaded)."""
    code = ("import sys\nfrom nuke_hdmatt.cli import main\nrc = main(sys.argv[1:])\n"
            "print('torch loaded:', 'torch' in sys.modules)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=hdmatt_env(tmp_path), cwd=tmp_path)
    loaded = proc.stdout.strip().splitlines()[-1:] == ["torch loaded: True"]
    assert loaded or proc.stdout.strip().splitlines()[-1:] == ["torch loaded: False"], proc.stdout
    return proc, loaded


def json_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def temp_leftovers(*folders: Path) -> list[str]:
    """Hidden temp files (ours and imaging's) anywhere under ``folders``."""
    found = []
    for folder in folders:
        if folder.exists():
            found += [str(p) for p in folder.rglob(".*") if p.is_file()]
    return found
