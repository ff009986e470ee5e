"""Layering: the command line sits on top; nothing in the package imports it.

Imports are read from the source (also those inside functions), so a lazy upward import
fails here as a module-level one would.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nuke_hdmatt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from . import x`` gives ``pkg.x``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_nothing_imports_the_cli():
    importers = sorted(_module_name(p) for p in PACKAGE.rglob("*.py")
                       if "nuke_hdmatt.cli" in _imports(p))
    assert importers == []


def test_the_import_reader_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    # the check above must be able to fail: a function-level `from ..cli import main`
    # inside a subpackage is found
    fake = PACKAGE / "farm" / "nuke_job.py"
    text = "def f():\n    from ..cli import main\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: text)
    assert "nuke_hdmatt.cli" in _imports(fake)
    assert "nuke_hdmatt.cli.main" in _imports(fake)


def test_demo_and_farm_reach_the_workflow_not_the_cli():
    for rel in ("demo.py", "farm/nuke_job.py"):
        assert "nuke_hdmatt.shot.workflow" in _imports(PACKAGE / rel), rel


def test_the_engine_and_imaging_know_no_shot():
    """Dependencies point down: the shot's workflow uses the engine and the imaging layer,
    never the other way round."""
    shot = "nuke_hdmatt.shot"
    importers = sorted(_module_name(p) for layer in ("engine", "imaging")
                       for p in (PACKAGE / layer).rglob("*.py")
                       if any(n == shot or n.startswith(shot + ".") for n in _imports(p)))
    assert importers == []


def test_only_the_gizmos_modules_import_nuke_and_none_imports_torch():
    """The Nuke side: ``nuke`` only where the gizmo's Python and the farm's prepass need it
    (the rest runs on farm workers and in tests without Nuke); torch and numpy nowhere (they
    belong to the engine process)."""
    side = sorted((PACKAGE / "nuke").glob("*.py"))
    with_nuke = sorted(p.stem for p in side if "nuke" in _imports(p))
    assert with_nuke == ["export", "generated", "knobs", "node", "prepass"]
    heavy = sorted(p.stem for p in side if {"torch", "numpy"} & _imports(p))
    assert heavy == []
    # of the package, only the standard-library modules it shares with the engine's side:
    # the node starts `hdmatt matte` as a process, it never reaches into the shot's workflow
    shared = {"nuke_hdmatt", "nuke_hdmatt.atomic", "nuke_hdmatt.engine.settings",
              "nuke_hdmatt.engine.weights", "nuke_hdmatt.engine_env", "nuke_hdmatt.errors",
              "nuke_hdmatt.exposure", "nuke_hdmatt.sequence"}
    reached = {name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in shared else name
               for p in side for name in _imports(p)
               if name.startswith("nuke_hdmatt") and not name.startswith("nuke_hdmatt.nuke")}
    assert reached <= shared, sorted(reached - shared)


def test_the_engine_knows_no_files_environment_nuke_or_ocio_and_prints_nothing():
    """Arrays in, arrays out: the engine imports no file, colour or Nuke library and none of
    the layers above it, reads no environment variable and prints nothing (its callers
    report; a farm log or Nuke's console must not get stray lines)."""
    banned = {"nuke", "OpenImageIO", "PyOpenColorIO", "nuke_hdmatt.imaging", "nuke_hdmatt.shot",
              "nuke_hdmatt.cli", "nuke_hdmatt.nuke", "nuke_hdmatt.engine_env"}
    offenders = []
    for path in sorted((PACKAGE / "engine").rglob("*.py")):
        imports = _imports(path)
        offenders += [f"{path.name} imports {n}" for n in sorted(imports)
                      if any(n == b or n.startswith(b + ".") for b in banned)]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.name}:{node.lineno} prints")
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                offenders.append(f"{path.name}:{node.lineno} reads the environment")
    assert offenders == []
