#!/usr/bin/env python3
"""Install the HDMatt engine environment and hook the HDMatt gizmo into Nuke.

    python3 install.py                     # ./.venv with pinned torch + nuke_hdmatt, Nuke hooks
    python3 install.py --python /usr/bin/python3.11
    python3 install.py --print-nuke-path   # touch nothing in $HOME; print the env lines instead
    python3 install.py --print-nuke-path --shell powershell   # ... as PowerShell (or cmd) lines
    python3 install.py --check             # torch, CUDA, OpenImageIO, OpenColorIO, weights sha256
    python3 install.py --uninstall         # remove exactly what the install added

What the install adds to the user's home (and ``--uninstall`` removes again):

* a marked block in ``~/.nuke/init.py`` that calls ``nuke.pluginAddPath(<repo>/gizmos)``;
  re-running replaces the block, never duplicates it;
* ``~/.nuke/hdmatt_engine.json``: the engine's ``hdmatt`` executable, which the gizmo runs
  as a separate process (Nuke's Python never imports torch). It also lists what the install
  created (``~/.nuke``, ``init.py``) so that ``--uninstall`` can restore the home exactly.

A venv the install creates holds a mark file (:data:`CREATED_MARK`); ``--uninstall`` removes
the venvs the record names and the one ``--venv`` names (without a record, the default
``.venv``: ``--no-nuke`` and ``--print-nuke-path`` write none) only where that mark is, so an
environment that was there before (``--venv`` naming a studio's) is never deleted, nor the
checkout's ``.venv`` when this home's record names another.

A ``~/.nuke/init.py`` that is a symlink (a dotfiles repository, a studio-managed file) is
edited where it points, never replaced by a plain file.

Managed pipelines (rez, a studio ``NUKE_PATH``) should not edit homes at all: put
``<checkout>/gizmos`` on ``NUKE_PATH`` and point ``HDMATT_ENGINE`` at the engine's
``hdmatt``; ``--print-nuke-path`` prints exactly those two lines.

After it, ``.venv/bin/hdmatt`` exists in the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# the package's stdlib-only modules (atomic writes, the engine record) serve install too
sys.path.insert(0, str(ROOT))
from nuke_hdmatt import ENGINE_VERSION, engine_env  # noqa: E402  (after the path is set)
from nuke_hdmatt.atomic import write_text_atomic  # noqa: E402  (after the path is set)

TORCH_PIN = "torch==2.13.0"  # unpinned torch pulls a multi-GB CUDA build
GIZMO_DIR = ROOT / "gizmos"
BLOCK_START = "# >>> hdmatt: added by install.py, remove with `install.py --uninstall` >>>"
BLOCK_END = "# <<< hdmatt <<<"
RECORD_NAME = engine_env.RECORD_NAME
CREATED_MARK = ".hdmatt-install-created"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_hdmatt(venv: Path) -> Path:
    return venv / ("Scripts/hdmatt.exe" if os.name == "nt" else "bin/hdmatt")


def run(cmd: list) -> None:
    # stderr: stdout stays clean for `eval "$(python3 install.py --print-nuke-path)"`
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def create_env(venv: Path, python: str, extras: str) -> bool:
    """Create or reuse the engine venv; returns True when this call created it."""
    py = venv_python(venv)
    created = not py.exists()
    if created:
        run([python, "-m", "venv", venv])
        mark_created(venv)
    else:
        print(f"reusing engine environment {venv}", file=sys.stderr)
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    # torch first and pinned, so nothing below can resolve a different build
    run([py, "-m", "pip", "install", "--quiet", TORCH_PIN])
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    run([py, "-m", "pip", "install", "--quiet", "-e", target])
    return created


def mark_created(venv: Path) -> None:
    """Mark ``venv`` as made by this install, for ``--uninstall``."""
    (Path(venv) / CREATED_MARK).write_text(f"created by {ROOT / 'install.py'}\n", encoding="utf-8")


def remove_created_envs(candidates) -> list[str]:
    """Delete those of the venv folders ``candidates`` that hold :data:`CREATED_MARK`;
    returns what was removed."""
    removed = []
    for env_dir in dict.fromkeys(Path(c).resolve() for c in candidates):
        if (env_dir / CREATED_MARK).is_file():
            shutil.rmtree(env_dir)
            removed.append(str(env_dir))
    return removed


# ---------------------------------------------------------------- Nuke hooks


def nuke_dir(home: Path) -> Path:
    return Path(home) / ".nuke"


def hook_block(plugin_dir: Path) -> str:
    # init.py runs inside Nuke with `nuke` importable; pluginAddPath also puts the folder on
    # sys.path, which is how gizmos/init.py finds the nuke_hdmatt package next to it
    return (f"{BLOCK_START}\nimport nuke\nnuke.pluginAddPath({str(plugin_dir)!r})\n{BLOCK_END}\n")


def _split_block(text: str) -> tuple[str, str, bool]:
    """(before, after, found) around our marked block in ``text``."""
    start = text.find(BLOCK_START)
    if start < 0:
        return text, "", False
    end = text.find(BLOCK_END, start)
    if end < 0:
        raise SystemExit(f"install.py: unterminated hdmatt block (no '{BLOCK_END}'); fix it by hand")
    end += len(BLOCK_END)
    if text[end:end + 1] == "\n":
        end += 1
    return text[:start], text[end:], True


def read_record(home: Path) -> dict | None:
    path = nuke_dir(home) / RECORD_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise SystemExit(f"install.py: {path}: not valid JSON; delete it and re-run")


def add_nuke_hooks(home: Path, plugin_dir: Path, hdmatt: Path, python: Path) -> dict:
    """Hook the gizmo folder into ``<home>/.nuke/init.py`` and record the engine.

    Idempotent: a second run rewrites the block and the record in place and keeps the first
    run's list of created paths, so ``remove_nuke_hooks`` still restores the original home.

    Returns
    -------
    dict
        The engine record written to ``<home>/.nuke/hdmatt_engine.json``.
    """
    home = Path(home)
    ndir = nuke_dir(home)
    old = read_record(home) or {}
    created = dict(old.get("created") or {})
    if not ndir.exists():
        ndir.mkdir(parents=True)
        created["nuke_dir"] = True
    init = ndir / "init.py"
    if not init.exists():
        created["init_py"] = True
        text = ""
    else:
        text = init.read_text(encoding="utf-8")
    before, after, found = _split_block(text)
    if not found and before and not before.endswith("\n"):
        before += "\n"
        created["init_py_newline"] = True
    write_text_atomic(init, before + hook_block(plugin_dir) + after)
    # records before the mark file said "venv": true, for whichever venv the record named
    # last; now every marked venv an install recorded, the mark deciding (remove_created_envs)
    created.pop("venv", None)
    env_dir = Path(python).parent.parent
    if (env_dir / CREATED_MARK).is_file():
        created["venvs"] = list(dict.fromkeys([*created.get("venvs", []), str(env_dir)]))
    rec = engine_env.write_record(ndir / RECORD_NAME, hdmatt, python, ROOT, ENGINE_VERSION,
                                  plugin_path=plugin_dir, created=created)
    return rec


def remove_nuke_hooks(home: Path) -> list[str]:
    """Undo ``add_nuke_hooks`` exactly; returns what was removed (for the user)."""
    home = Path(home)
    ndir = nuke_dir(home)
    rec = read_record(home) or {}
    created = rec.get("created") or {}
    removed = []
    init = ndir / "init.py"
    if init.exists():
        before, after, found = _split_block(init.read_text(encoding="utf-8"))
        if found:
            if created.get("init_py_newline") and before.endswith("\n") and not after:
                before = before[:-1]
            rest = before + after
            if created.get("init_py") and not rest.strip():
                init.unlink()
                removed.append(str(init))
            else:
                write_text_atomic(init, rest)
                removed.append(f"hdmatt block in {init}")
    record = ndir / RECORD_NAME
    if record.exists():
        record.unlink()
        removed.append(str(record))
    if created.get("nuke_dir") and ndir.exists() and not any(ndir.iterdir()):
        ndir.rmdir()
        removed.append(str(ndir))
    return removed


SHELLS = ("sh", "powershell", "cmd")


def default_shell() -> str:
    return "powershell" if os.name == "nt" else "sh"


def nuke_path_lines(plugin_dir: Path, hdmatt: Path, shell: str = "sh") -> str:
    """Lines for ``shell`` (sh, powershell, cmd) that make the gizmo and the engine visible
    without touching ``~/.nuke``: ``NUKE_PATH`` gains the gizmo folder, ``HDMATT_ENGINE``
    names the engine. The paths are quoted as literals (a checkout under a folder named
    with ``$`` or a backquote must not run anything in ``eval``); Windows paths cannot hold
    the ``"`` that cmd's ``set "A=B"`` would need escaped."""
    if shell == "powershell":
        def lit(p):
            return "'" + str(p).replace("'", "''") + "'"
        return (f'$env:NUKE_PATH = {lit(plugin_dir)} + $(if ($env:NUKE_PATH) '
                f'{{ ";" + $env:NUKE_PATH }} else {{ "" }})\n'
                f'$env:HDMATT_ENGINE = {lit(hdmatt)}\n')
    if shell == "cmd":
        return (f'if defined NUKE_PATH (set "NUKE_PATH={plugin_dir};%NUKE_PATH%") '
                f'else (set "NUKE_PATH={plugin_dir}")\n'
                f'set "HDMATT_ENGINE={hdmatt}"\n')
    return (f'export NUKE_PATH={shlex.quote(str(plugin_dir))}"${{NUKE_PATH:+:$NUKE_PATH}}"\n'
            f'export HDMATT_ENGINE={shlex.quote(str(hdmatt))}\n')


# ---------------------------------------------------------------- --check


def expected_weight_hashes(model_dir: Path) -> dict[str, str]:
    """{weights file name: sha256} from ``manifest.json`` or ``*.sha256`` sidecars in ``model_dir``.

    Sidecars use ``sha256sum`` format (``HEX  NAME``, NAME optional: ``x.safetensors.sha256``
    then names ``x.safetensors``).
    """
    found: dict[str, str] = {}
    manifest = model_dir / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data.get("files", data.get("weights", data)) if isinstance(data, dict) else data
        if isinstance(entries, dict):
            items = [{"file": k, "sha256": v if isinstance(v, str) else v.get("sha256")}
                     for k, v in entries.items()]
        else:
            items = entries if isinstance(entries, list) else []
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("sha256"), str):
                name = it.get("file") or it.get("path") or it.get("name")
                if name:
                    found[Path(name).name] = it["sha256"].lower()
    for side in sorted(model_dir.glob("*.sha256")):
        parts = side.read_text(encoding="utf-8").split()
        if not parts:
            continue
        name = parts[1].lstrip("*") if len(parts) > 1 else side.name[: -len(".sha256")]
        found[Path(name).name] = parts[0].lower()
    return found


def check_weights(model_dir: Path) -> list[tuple[str, str, str]]:
    """[(status, what, detail)] for each bundled weights file; status is ok / WARN / FAIL."""
    from nuke_hdmatt.engine.weights import file_sha256  # torch-free: the engine's own hash

    rows = []
    expected = expected_weight_hashes(model_dir) if model_dir.is_dir() else {}
    files = sorted(p for ext in ("*.safetensors", "*.pt", "*.pth") for p in model_dir.glob(ext)) \
        if model_dir.is_dir() else []
    if not files:
        rows.append(("FAIL", "weights", f"no weights in {model_dir} (hdmatt matte refuses to run "
                     "without --weights or $HDMATT_WEIGHTS)"))
    for p in files:
        want = expected.get(p.name)
        got = file_sha256(p)
        if want is None:
            rows.append(("WARN", f"weights {p.name}", f"sha256 {got[:12]}..., none recorded"))
        elif want == got:
            rows.append(("ok", f"weights {p.name}", f"sha256 {got[:12]}... matches"))
        else:
            rows.append(("FAIL", f"weights {p.name}",
                         f"sha256 {got[:12]}... but {want[:12]}... recorded: corrupt or stale"))
    for name in sorted(set(expected) - {p.name for p in files}):
        rows.append(("FAIL", f"weights {name}", "recorded but missing"))
    return rows


def check_here() -> list[tuple[str, str, str]]:
    """Checks run inside the engine interpreter."""
    rows = []
    try:
        import torch
        pin = TORCH_PIN.split("==")[1]
        ok = torch.__version__.split("+")[0] == pin
        rows.append(("ok" if ok else "FAIL", "torch", f"{torch.__version__} (pinned {pin})"))
        cuda = torch.cuda.is_available()
        rows.append(("ok", "CUDA", torch.cuda.get_device_name(0) if cuda
                     else "not available: the engine runs on CPU"))
    except ImportError as exc:
        rows.append(("FAIL", "torch", f"not importable ({exc})"))
    try:
        import OpenImageIO as oiio
        rows.append(("ok", "OpenImageIO", oiio.VERSION_STRING))
    except ImportError as exc:
        rows.append(("FAIL", "OpenImageIO", f"not importable ({exc})"))
    try:
        import PyOpenColorIO as ocio
        cfg = ocio.Config.CreateFromFile("ocio://cg-config-latest")
        rows.append(("ok", "OpenColorIO", f"{ocio.__version__}, built-in config with "
                     f"{len(list(cfg.getColorSpaceNames()))} colour spaces"))
    except Exception as exc:  # ImportError or an OCIO exception: both mean unusable
        rows.append(("FAIL", "OpenColorIO", str(exc)))
    rows.extend(check_weights(ROOT / "nuke_hdmatt" / "model"))
    return rows


def print_rows(rows) -> int:
    for status, what, detail in rows:
        print(f"[{status:>4}] {what}: {detail}")
    return 1 if any(r[0] == "FAIL" for r in rows) else 0


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter for the engine venv")
    ap.add_argument("--venv", help="engine environment folder (default: .venv in the checkout)")
    ap.add_argument("--dev", action="store_true", help="also install test and benchmark tools")
    ap.add_argument("--no-env", action="store_true",
                    help="do not create or update the venv (hooks and record only)")
    ap.add_argument("--no-nuke", action="store_true", help="do not touch ~/.nuke")
    ap.add_argument("--print-nuke-path", action="store_true",
                    help="print NUKE_PATH / HDMATT_ENGINE lines instead of editing ~/.nuke "
                         "(the route for managed pipelines: rez, a studio NUKE_PATH)")
    ap.add_argument("--shell", choices=SHELLS, default=default_shell(),
                    help="syntax of the printed lines (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="verify the engine environment")
    ap.add_argument("--in-env", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--uninstall", action="store_true", help="remove what install added")
    args = ap.parse_args(argv)
    venv = Path(args.venv or ROOT / ".venv").resolve()
    home = Path.home()

    if args.check:
        py = venv_python(venv)
        if args.in_env or not py.exists():
            if not py.exists():
                print(f"[WARN] engine venv {venv} missing; checking {sys.executable} instead")
            return print_rows(check_here())
        return subprocess.run([str(py), __file__, "--check", "--in-env", "--venv", str(venv)]).returncode

    if args.uninstall:
        rec = read_record(home) or {}
        removed = remove_nuke_hooks(home)
        # the checkout's default venv is not this home's to remove when the home's record names
        # its own (another user's install, or one pointed at a studio environment)
        recorded = (rec.get("created") or {}).get("venvs", [])
        envs = [*([venv] if args.venv or not rec else []), *recorded]
        for what in removed + remove_created_envs(envs):
            print(f"removed {what}")
        if venv not in map(Path, envs) and (venv / CREATED_MARK).is_file():
            print(f"kept {venv} (this home's install names another environment; "
                  f"--uninstall --venv {venv} removes it)")
        return 0

    if not args.no_env:
        try:
            create_env(venv, args.python, "test,bench" if args.dev else "")
        except subprocess.CalledProcessError as exc:
            print(f"install.py: step failed ({exc.cmd[0]} exit {exc.returncode})", file=sys.stderr)
            return 1
    hdmatt = venv_hdmatt(venv)
    if args.print_nuke_path:
        print(nuke_path_lines(GIZMO_DIR, hdmatt, args.shell), end="")
    elif not args.no_nuke:
        rec = add_nuke_hooks(home, GIZMO_DIR, hdmatt, venv_python(venv))
        print(f"Nuke: {nuke_dir(home) / 'init.py'} loads {GIZMO_DIR}; engine recorded in "
              f"{nuke_dir(home) / RECORD_NAME} ({rec['hdmatt']})")
        print(f"Or, without ~/.nuke (managed pipelines), set these in your {args.shell} "
              "environment instead:")
        print(nuke_path_lines(GIZMO_DIR, hdmatt, args.shell), end="")
    print(f"engine ready: {hdmatt} (python {venv_python(venv)})",
          file=sys.stderr if args.print_nuke_path else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
