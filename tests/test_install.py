"""install.py: Nuke hooks and engine record on a temporary HOME, --check, --uninstall.

No venv is created here (``--no-env``): that is minutes of pip; CI runs the real install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nuke_hdmatt import engine_env

ROOT = Path(__file__).resolve().parents[1]


def _load_install():
    spec = importlib.util.spec_from_file_location("hdmatt_install", ROOT / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


install = _load_install()


def snapshot(home: Path) -> dict:
    """Every path under ``home`` with its bytes (files) and permission bits."""
    snap = {}
    for p in sorted(home.rglob("*")):
        rel = str(p.relative_to(home))
        mode = stat.S_IMODE(p.stat().st_mode)
        snap[rel] = (p.read_bytes() if p.is_file() else "dir", mode)
    return snap


@pytest.fixture
def engine(tmp_path):
    """A stand-in engine executable (only its path is recorded, never run here)."""
    exe = tmp_path / "venv" / "bin" / "hdmatt"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_hooks_on_empty_home_are_idempotent_and_uninstall_restores(tmp_path, engine):
    home = tmp_path / "home"
    home.mkdir()
    before = snapshot(home)
    for _ in range(2):
        install.add_nuke_hooks(home, install.GIZMO_DIR, engine, engine.parent / "python")
    init = (home / ".nuke" / "init.py").read_text()
    assert init.count(install.BLOCK_START) == 1 and init.count(install.BLOCK_END) == 1
    assert f"nuke.pluginAddPath({str(install.GIZMO_DIR)!r})" in init
    # the gizmo side finds the recorded engine through the same file
    env = {"PATH": ""}
    assert engine_env.engine_executable(env=env, home=home) == str(engine)
    install.remove_nuke_hooks(home)
    assert snapshot(home) == before
    assert not (home / ".nuke").exists()


@pytest.mark.parametrize("existing", ["import nuke\nnuke.pluginAddPath('/studio/tools')\n",
                                      "print('no trailing newline')"])
def test_existing_init_py_survives_byte_for_byte(tmp_path, engine, existing):
    home = tmp_path / "home"
    (home / ".nuke").mkdir(parents=True)
    (home / ".nuke" / "init.py").write_text(existing)
    (home / ".nuke" / "init.py").chmod(0o640)
    (home / ".nuke" / "menu.py").write_text("# studio menu\n")
    before = snapshot(home)
    install.add_nuke_hooks(home, install.GIZMO_DIR, engine, engine.parent / "python")
    install.add_nuke_hooks(home, install.GIZMO_DIR / "moved", engine, engine.parent / "python")
    text = (home / ".nuke" / "init.py").read_text()
    assert text.startswith(existing.rstrip("\n"))
    assert text.count(install.BLOCK_START) == 1
    assert str(install.GIZMO_DIR / "moved") in text  # re-run rewrites the block in place
    compile(text, "init.py", "exec")  # still valid Python for Nuke to run
    install.remove_nuke_hooks(home)
    assert snapshot(home) == before


def test_command_line_install_and_uninstall(tmp_path, engine):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    venv = engine.parent.parent
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "install.py"), *a],
                                    env=env, capture_output=True, text=True, timeout=60)
    r = run("--no-env", "--venv", str(venv))
    assert r.returncode == 0, r.stderr
    rec = engine_env.read_record(home / ".nuke" / "hdmatt_engine.json")
    assert rec["hdmatt"] == str(engine) and rec["repo"] == str(ROOT)
    r = run("--uninstall")
    assert r.returncode == 0, r.stderr
    assert list(home.iterdir()) == []

    r = run("--no-env", "--print-nuke-path", "--venv", str(venv))
    assert r.returncode == 0
    assert r.stdout == install.nuke_path_lines(ROOT / "gizmos", engine, "sh")
    assert len(r.stdout.splitlines()) == 2     # only lines a shell can eval
    assert list(home.iterdir()) == []  # printing touches nothing


@pytest.mark.parametrize("before", [None, "/studio/gizmos"])
def test_printed_nuke_path_lines_hold_any_folder_name_literally(tmp_path, before):
    odd = tmp_path / "co $HOME `touch pwned` \"q\" 'x'"
    lines = install.nuke_path_lines(odd / "gizmos", odd / "bin" / "hdmatt", "sh")
    env = {"PATH": os.environ["PATH"], **({"NUKE_PATH": before} if before else {})}
    r = subprocess.run(["sh", "-c", lines + 'printf "%s\\n" "$NUKE_PATH" "$HDMATT_ENGINE"'],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    want = str(odd / "gizmos") + (f":{before}" if before else "")
    assert r.stdout.splitlines() == [want, str(odd / "bin" / "hdmatt")]
    assert not (tmp_path / "pwned").exists()
    ps = install.nuke_path_lines(odd / "gizmos", odd / "bin" / "hdmatt", "powershell")
    assert "'" + str(odd / "gizmos").replace("'", "''") + "'" in ps   # a literal string


def test_weights_sha256_check(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    rows = install.check_weights(model)  # no weights: hdmatt refuses to run, so FAIL
    assert [r[0] for r in rows] == ["FAIL"] and str(model) in rows[0][2]
    w = model / "hdmatt_small.safetensors"
    w.write_bytes(b"not really weights")
    digest = hashlib.sha256(w.read_bytes()).hexdigest()
    assert [r[0] for r in install.check_weights(model)] == ["WARN"]  # nothing recorded
    (model / "hdmatt_small.safetensors.sha256").write_text(f"{digest}  hdmatt_small.safetensors\n")
    assert [r[0] for r in install.check_weights(model)] == ["ok"]
    w.write_bytes(b"truncated")
    rows = install.check_weights(model)
    assert rows[0][0] == "FAIL" and "corrupt" in rows[0][2]
    (model / "hdmatt_small.safetensors.sha256").unlink()
    (model / "manifest.json").write_text(
        '{"files": {"hdmatt_small.safetensors": {"sha256": "%s"}}}'
        % hashlib.sha256(b"truncated").hexdigest())
    assert [r[0] for r in install.check_weights(model)] == ["ok"]


def test_check_reports_real_environment():
    # runs in the project venv: real torch, OpenImageIO and OpenColorIO imports
    r = subprocess.run([sys.executable, str(ROOT / "install.py"), "--check", "--in-env"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout
    for what in ("torch: 2.13.0", "CUDA:", "OpenImageIO:", "OpenColorIO:", "weights"):
        assert what in out, out
    assert r.returncode == (1 if "[FAIL]" in out else 0)


def test_engine_lookup_errors_are_one_line(tmp_path):
    from nuke_hdmatt.errors import UsageError
    with pytest.raises(UsageError, match="run install.py"):
        engine_env.engine_executable(env={"PATH": ""}, home=tmp_path)
    (tmp_path / ".nuke").mkdir()
    (tmp_path / ".nuke" / "hdmatt_engine.json").write_text("{}")
    with pytest.raises(UsageError, match="hdmatt_engine.json"):
        engine_env.engine_executable(env={"PATH": ""}, home=tmp_path)
    with pytest.raises(UsageError, match="HDMATT_ENGINE"):
        engine_env.engine_executable(env={"HDMATT_ENGINE": str(tmp_path / "nope")})


def test_uninstall_removes_a_venv_only_if_the_install_created_it(tmp_path, monkeypatch, engine):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    studio = engine.parent.parent                 # an environment that was there before
    (studio / "bin" / "python").write_text("")
    made = tmp_path / "made"                      # the one an install created
    (made / "bin").mkdir(parents=True)
    install.mark_created(made)
    # the first install made `made`; a second one was pointed at the studio's environment
    install.add_nuke_hooks(home, install.GIZMO_DIR, made / "bin" / "hdmatt", made / "bin" / "python")
    install.add_nuke_hooks(home, install.GIZMO_DIR, engine, studio / "bin" / "python")
    assert install.main(["--uninstall", "--venv", str(tmp_path / "elsewhere")]) == 0
    assert studio.exists() and (studio / "bin" / "python").exists()
    assert list(home.iterdir()) == [] and not made.exists()
    # --no-nuke and --print-nuke-path installs leave no record: --venv finds the mark
    (studio.parent / "other").mkdir()
    install.mark_created(studio.parent / "other")
    assert install.main(["--uninstall", "--venv", str(studio.parent / "other")]) == 0
    assert not (studio.parent / "other").exists() and studio.exists()


def test_bare_uninstall_keeps_the_checkouts_venv_when_the_record_names_another(
        tmp_path, monkeypatch, engine, capsys):
    """CI installs the checkout's .venv (marked); a home whose install was pointed at another
    environment must not lose that .venv to a bare --uninstall (it ran the test suite)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    checkout = tmp_path / "checkout"
    (checkout / ".venv").mkdir(parents=True)
    install.mark_created(checkout / ".venv")
    monkeypatch.setattr(install, "ROOT", checkout)
    install.add_nuke_hooks(home, install.GIZMO_DIR, engine, engine.parent / "python")
    assert install.main(["--uninstall"]) == 0
    assert (checkout / ".venv" / install.CREATED_MARK).is_file()
    assert f"kept {checkout / '.venv'}" in capsys.readouterr().out  # said, not silent
    assert list(home.iterdir()) == []
    # no record at all (a --no-nuke install): the default .venv is what was installed
    assert install.main(["--uninstall"]) == 0
    assert not (checkout / ".venv").exists()


def test_the_engine_record_writer_gives_what_install_writes(tmp_path, engine):
    """install.py and engine_env write one schema: the record install.py leaves is, key for
    key and byte for byte, what engine_env.write_record writes from the same values."""
    home = tmp_path / "home"
    home.mkdir()
    rec = install.add_nuke_hooks(home, install.GIZMO_DIR, engine, engine.parent / "python")
    written = (home / ".nuke" / engine_env.RECORD_NAME).read_text()
    again = engine_env.write_record(tmp_path / "again.json", rec["hdmatt"], rec["python"],
                                    rec["repo"], rec["engine_version"],
                                    plugin_path=rec["plugin_path"], created=rec["created"])
    assert again == rec and (tmp_path / "again.json").read_text() == written
    assert engine_env.read_record(tmp_path / "again.json") == rec
