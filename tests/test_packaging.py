"""The wheel carries its weights; no weights found is a one-line exit-2 error, never an
untrained network.

The wheel test builds from the repository's ``pyproject.toml`` and package (copied, so the
checkout gets no ``build/`` or ``*.egg-info``), installs it into a fresh venv that sees
nothing of the checkout (its dependencies, torch and OpenImageIO, come from this
interpreter's site-packages through a ``.pth``, added after the install so that pip sees an
empty environment) and runs ``hdmatt demo`` there from a folder outside the checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cli_fixtures import exr_sequence, hdmatt_env
from nuke_hdmatt import cli
from nuke_hdmatt.engine import weights

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_IN_WHEEL = "nuke_hdmatt/model/hdmatt.safetensors"


def _recorded_sha256(path: Path) -> str:
    return Path(str(path) + ".sha256").read_text(encoding="utf-8").split()[0]


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No --weights, no $HDMATT_WEIGHTS and nothing shipped: the path the CLI would look at."""
    gone = tmp_path / "pkg" / "model" / "hdmatt.safetensors"
    monkeypatch.delenv("HDMATT_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "BUNDLED_WEIGHTS", gone)
    return gone


def _hdmatt_without_shipped_weights(tmp_path: Path, gone: Path, *args, env=None):
    """The real command line in a subprocess whose package has no weights at ``gone``."""
    code = ("import sys\nfrom pathlib import Path\nimport nuke_hdmatt.engine.weights as w\n"
            f"w.BUNDLED_WEIGHTS = Path({str(gone)!r})\n"
            "from nuke_hdmatt.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    if env is None:
        env = hdmatt_env(tmp_path)
        env.pop("HDMATT_WEIGHTS", None)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hdmatt: error: "), err
    return lines[0]


def test_no_weights_is_a_one_line_exit_2_naming_where_it_looked(no_weights, tmp_path):
    plate, trimap = exr_sequence(tmp_path / "in", [1])
    proc = _hdmatt_without_shipped_weights(
        tmp_path, no_weights, "matte", plate.replace("####", "0001"),
        trimap.replace("####", "0001"), "-o", tmp_path / "out" / "a.exr", "--no-cache")
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "no weights found" in line and "$HDMATT_WEIGHTS" in line and "--weights" in line
    assert str(no_weights) in line
    assert not (tmp_path / "out").exists()


def test_demo_without_weights_stops_before_writing_anything(no_weights, tmp_path):
    proc = _hdmatt_without_shipped_weights(tmp_path, no_weights, "demo", "-o", "demo")
    assert proc.returncode == 2, proc.stderr
    assert str(no_weights) in _one_error_line(proc.stderr)
    assert not (tmp_path / "demo").exists()


def test_hdmatt_weights_naming_no_file_is_exit_2(no_weights, tmp_path):
    env = {**hdmatt_env(tmp_path), "HDMATT_WEIGHTS": str(tmp_path / "mine.safetensors")}
    proc = _hdmatt_without_shipped_weights(tmp_path, no_weights, "demo", "-o", "demo", env=env)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "$HDMATT_WEIGHTS" in line and str(tmp_path / "mine.safetensors") in line
    assert not (tmp_path / "demo").exists()


def test_weights_lookup_order(no_weights, tmp_path, monkeypatch):
    """--weights, else $HDMATT_WEIGHTS, else the shipped file (torch-free: no engine load)."""
    import argparse
    shipped = no_weights
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"x")
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"y")

    def resolved(given=None):
        args = argparse.Namespace(weights=given)
        cli.resolve_weights(args)
        return args.weights
    assert resolved() == str(shipped)
    monkeypatch.setenv("HDMATT_WEIGHTS", "")  # empty: unset
    assert resolved() == str(shipped)
    monkeypatch.setenv("HDMATT_WEIGHTS", str(mine))
    assert resolved() == str(mine)
    assert resolved("given.safetensors") == "given.safetensors"  # its existence: load_engine
    with pytest.raises(cli.UsageError, match="--weights is empty"):
        resolved(" ")


def test_the_engine_reads_no_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HDMATT_WEIGHTS", str(tmp_path / "elsewhere.safetensors"))
    assert weights.default_weights_path() == weights.BUNDLED_WEIGHTS
    assert weights.BUNDLED_WEIGHTS.is_relative_to(Path(weights.__file__).resolve().parents[1])


def _build_wheel(tmp_path: Path) -> Path:
    pytest.importorskip("setuptools")  # the build backend, from this environment (offline)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "nuke_hdmatt", src / "nuke_hdmatt",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "--no-index", "-q", "-w", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("nuke_hdmatt-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_carries_its_weights_and_runs_the_demo_in_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert WEIGHTS_IN_WHEEL in names and WEIGHTS_IN_WHEEL + ".sha256" in names
        assert WEIGHTS_IN_WHEEL + ".detail.json" in names
        data = z.read(WEIGHTS_IN_WHEEL)
        recorded = z.read(WEIGHTS_IN_WHEEL + ".sha256").decode().split()[0]
        assert "hdmatt = nuke_hdmatt.cli:main" in z.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert hashlib.sha256(data).hexdigest() == recorded == _recorded_sha256(weights.BUNDLED_WEIGHTS)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                           "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # torch, OpenImageIO, ...: this environment's, seen after the venv's own site-packages
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_hdmatt_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")

    away = tmp_path / "away"
    away.mkdir()
    env = hdmatt_env(away)
    for name in ("PYTHONPATH", "HDMATT_WEIGHTS", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    installed = site / WEIGHTS_IN_WHEEL
    where = subprocess.run([str(py), "-c", "import nuke_hdmatt.engine.weights as w; "
                            "print(w.default_weights_path())"], capture_output=True, text=True,
                           env=env, cwd=away, timeout=120)
    assert where.stdout.strip() == str(installed), where.stderr

    exe = venv / ("Scripts/hdmatt.exe" if os.name == "nt" else "bin/hdmatt")
    log = away / "demo.jsonl"
    demo = subprocess.run([str(exe), "demo", "-o", "demo", "--no-cache", "--json-log", str(log)],
                          capture_output=True, text=True, env=env, cwd=away, timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert "SAD against the true alpha" in demo.stdout
    sad = float(demo.stdout.rsplit(":", 1)[1])
    assert sad < 15, demo.stdout  # trained weights (an untrained network scores ~33)
    assert f'"weights": "{installed}"' in log.read_text()
    alpha = (away / "demo" / "alpha.exr")
    assert alpha.is_file() and np.isfinite(sad)

    # the same install without its weights: one line naming where it looked, exit 2
    installed.unlink()
    bare = subprocess.run([str(exe), "demo", "-o", "bare", "--no-cache"], capture_output=True,
                          text=True, env=env, cwd=away, timeout=120)
    assert bare.returncode == 2, bare.stderr
    assert str(installed) in _one_error_line(bare.stderr)
    assert not (away / "bare").exists()
