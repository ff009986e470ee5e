#!/usr/bin/env python3
"""Install the HDMatt engine environment (and, later, the Nuke plugin hooks).

    python3 install.py            # creates ./.venv with pinned torch, installs nuke_hdmatt
    python3 install.py --python /usr/bin/python3.11

After it, ``.venv/bin/hdmatt`` exists in the repository root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TORCH_PIN = "torch==2.13.0"  # unpinned torch pulls a multi-GB CUDA build


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def create_env(venv: Path, python: str, extras: str) -> Path:
    py = venv_python(venv)
    if not py.exists():
        run([python, "-m", "venv", venv])
    else:
        print(f"reusing engine environment {venv}")
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    # torch first and pinned, so nothing below can resolve a different build
    run([py, "-m", "pip", "install", "--quiet", TORCH_PIN])
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    run([py, "-m", "pip", "install", "--quiet", "-e", target])
    return py


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter for the engine venv")
    ap.add_argument("--venv", default=str(ROOT / ".venv"), help="engine environment folder")
    ap.add_argument("--dev", action="store_true", help="also install test and benchmark tools")
    args = ap.parse_args(argv)
    try:
        py = create_env(Path(args.venv), args.python, "test,bench" if args.dev else "")
    except subprocess.CalledProcessError as exc:
        print(f"install.py: step failed ({exc.cmd[0]} exit {exc.returncode})", file=sys.stderr)
        return 1
    print(f"engine ready: {Path(args.venv) / 'bin' / 'hdmatt'} (python {py})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
