"""Where the HDMatt engine lives, as recorded by ``install.py`` for the Nuke side.

Nuke's own Python must never import torch (Nuke ships its own libtorch; pip torch inside it
breaks), so the gizmo runs the engine as a separate process: the ``hdmatt`` executable of the
engine environment that ``install.py`` created. ``install.py`` records that executable in a
small JSON file; the gizmo reads it. Stdlib only: this module is imported inside Nuke.

Lookup order (first hit wins):

1. ``$HDMATT_ENGINE``: path of an ``hdmatt`` executable (farm workers, tests).
2. The record file: ``$HDMATT_ENGINE_RECORD`` if set, else ``~/.nuke/hdmatt_engine.json``.
3. ``hdmatt`` on ``PATH``.

Record format (JSON object, ``version`` 1; :func:`write_record` is the one writer, used by
``install.py``)::

    {"version": 1, "hdmatt": "/abs/.venv/bin/hdmatt", "python": "/abs/.venv/bin/python",
     "repo": "/abs/checkout", "engine_version": "0.1.0",
     "plugin_path": "/abs/checkout/gizmos", "created": {"nuke_dir": true, ...}}

``plugin_path`` and ``created`` (what the install made, so that ``install.py --uninstall``
removes exactly that) are written by the installer and optional for readers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .atomic import write_text_atomic
from .errors import UsageError

__all__ = ["RECORD_VERSION", "RECORD_NAME", "record_path", "write_record", "read_record",
           "engine_executable"]

RECORD_VERSION = 1
RECORD_NAME = "hdmatt_engine.json"  # in ~/.nuke
ENV_ENGINE = "HDMATT_ENGINE"
ENV_RECORD = "HDMATT_ENGINE_RECORD"


def nuke_home(home: str | os.PathLike | None = None) -> Path:
    """``~/.nuke`` of ``home`` (default: the current user's home)."""
    return Path(home if home is not None else Path.home()) / ".nuke"


def record_path(home: str | os.PathLike | None = None, env=None) -> Path:
    """The engine record file: ``$HDMATT_ENGINE_RECORD`` or ``<home>/.nuke/hdmatt_engine.json``."""
    env = os.environ if env is None else env
    if home is None and env.get(ENV_RECORD):
        return Path(env[ENV_RECORD])
    return nuke_home(home) / RECORD_NAME


def write_record(path: str | os.PathLike, hdmatt: str, python: str, repo: str,
                 engine_version: str, *, plugin_path: str | None = None,
                 created: dict | None = None) -> dict:
    """Write the record atomically (temp file in the same folder, then rename).

    Returns
    -------
    dict
        What was written.
    """
    rec = {"version": RECORD_VERSION, "hdmatt": str(hdmatt), "python": str(python),
           "repo": str(repo), "engine_version": engine_version}
    if plugin_path is not None:
        rec["plugin_path"] = str(plugin_path)
    if created is not None:
        rec["created"] = dict(created)
    write_text_atomic(path, json.dumps(rec, indent=2) + "\n")
    return rec


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate a record.

    Raises
    ------
    UsageError
        The file is not a version-1 record (names the file).
    """
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"unreadable engine record ({exc}); re-run install.py", path=str(path))
    if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION or "hdmatt" not in rec:
        raise UsageError("not an HDMatt engine record; re-run install.py", path=str(path))
    return rec


def engine_executable(env=None, home: str | os.PathLike | None = None) -> str:
    """The ``hdmatt`` executable the Nuke side must run.

    Raises
    ------
    UsageError
        No engine found anywhere, or the recorded one no longer exists.
    """
    env = os.environ if env is None else env
    if env.get(ENV_ENGINE):
        exe = env[ENV_ENGINE]
        if not os.access(exe, os.X_OK):
            raise UsageError(f"${ENV_ENGINE} is not an executable file", path=exe)
        return exe
    rec_file = record_path(home, env)
    if rec_file.exists():
        exe = read_record(rec_file)["hdmatt"]
        if not os.access(exe, os.X_OK):
            raise UsageError(f"recorded engine {exe} is missing; re-run install.py",
                             path=str(rec_file))
        return exe
    found = shutil.which("hdmatt", path=env.get("PATH"))
    if found:
        return found
    raise UsageError(f"no HDMatt engine: run install.py (it writes {rec_file}) or set ${ENV_ENGINE}")
