"""``hdmatt farm nuke``: the three-step Open Job Description job for a Nuke script, checked
with ``openjd check`` and run end to end with ``openjd run`` (real ``hdmatt matte``; ``nuke``
is ``tests/nuke_double/standin_nuke.py``, Nuke's command line over the test double)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nuke_double.fixtures import fake_nuke  # noqa: F401  (a pytest fixture, requested by name)
from test_nuke_node import plate_pixels, read_exr, trimap_pixels, write_exr

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
STANDIN_NUKE = Path(__file__).resolve().parent / "nuke_double" / "standin_nuke.py"

SCRIPT = """#! /opt/Nuke13.2v8/libnuke-13.2.8.so -nx
version 13.2 v8
Root {{
 inputs 0
 name {dir}/shot020.nk
 first_frame 1
 last_frame 2
 format "48 48 0 0 48 48 1 tiny"
 colorManagement OCIO
 OCIO_config cg-config-v2.1.0_aces-v1.3_ocio-v2.3
 workingSpaceLUT ACEScg
}}
Read {{
 inputs 0
 file {dir}/src/trimap.####.exr
 first 1
 last 2
 name ReadTrimap
}}
Read {{
 inputs 0
 file {dir}/src/plate.####.exr
 first 1
 last 2
 name ReadPlate
}}
HDMatt {{
 inputs 2
 cache {dir}/cache
 patch 64
 overlap 16
 name HDMatt1
}}
Write {{
 file {dir}/comp/comp.####.exr
 channels rgba
 datatype "32 bit float"
 raw true
 create_directories true
 name Write1
}}
"""


@pytest.fixture
def farm_shot(tmp_path):
    if not (BIN / "hdmatt").exists() or not (BIN / "openjd").exists():
        pytest.skip(f"hdmatt / openjd not installed in {BIN} (run install.py --dev)")
    (tmp_path / "src").mkdir()
    for f in (1, 2):
        write_exr(tmp_path / "src" / f"plate.{f:04d}.exr", plate_pixels(f), ("R", "G", "B"))
        write_exr(tmp_path / "src" / f"trimap.{f:04d}.exr", trimap_pixels(), ("R", "G", "B", "A"))
    script = tmp_path / "shot020.nk"
    script.write_text(SCRIPT.format(dir=tmp_path))
    nuke_bin = tmp_path / "bin"
    nuke_bin.mkdir()
    launcher = nuke_bin / "nuke"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN_NUKE}" "$@"\n')
    launcher.chmod(0o755)
    env = dict(os.environ, PATH=f"{nuke_bin}{os.pathsep}{os.environ['PATH']}",
               NUKE_PATH=str(ROOT / "gizmos"), HDMATT_ENGINE=str(BIN / "hdmatt"))
    env.pop("OCIO", None)
    return tmp_path, script, env


def hdmatt(*args, env):
    return subprocess.run([str(BIN / "hdmatt"), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_job_template_checks_and_runs_end_to_end(fake_nuke, farm_shot, monkeypatch):
    tmp_path, script, env = farm_shot
    # a frame generated interactively first: the farm must find it in the shared cache
    nuke = fake_nuke
    with monkeypatch.context() as m:  # a developer's own HDMATT_ENGINE comes back after
        m.setenv("HDMATT_ENGINE", env["HDMATT_ENGINE"])
        nuke.scriptOpen(str(script))
        from nuke_hdmatt.nuke import node as hdmatt_node
        assert hdmatt_node.generate(nuke.toNode("HDMatt1"), "1") is True
    alpha1 = tmp_path / "hdmatt" / "shot020" / "HDMatt1" / "alpha.0001.exr"
    interactive = read_exr(alpha1)["A"]

    r = hdmatt("farm", "nuke", script, "--node", "HDMatt1", "--write", "Write1", "--frames", "1-2",
               "--chunk", "2", "--gpu", "--hdmatt", BIN / "hdmatt", env=env)
    assert r.returncode == 0, r.stderr
    job = tmp_path / "job.yaml"
    job.write_text(r.stdout)
    import yaml
    tpl = yaml.safe_load(r.stdout)
    assert [s["name"] for s in tpl["steps"]] == ["ExportInputs", "Matte", "Render", "Cleanup"]
    assert tpl["steps"][1]["dependencies"] == [{"dependsOn": "ExportInputs"}]
    assert tpl["steps"][2]["dependencies"] == [{"dependsOn": "Matte"}]
    assert tpl["steps"][3]["dependencies"] == [{"dependsOn": "Render"}]
    assert tpl["steps"][2]["script"]["actions"]["onRun"]["args"] == \
        ["-F", "{{Task.Param.Frame}}", "-X", "{{Param.Write}}", "-x", "{{Param.Script}}"]

    chk = subprocess.run([str(BIN / "openjd"), "check", str(job)], capture_output=True, text=True,
                         timeout=60)
    assert chk.returncode == 0, chk.stdout + chk.stderr

    # the GPU requirement is for real farms; the local run has no GPU host
    run = subprocess.run([str(BIN / "openjd"), "run", str(job), "--step", "Render",
                          "--run-dependencies"], env=env, capture_output=True, text=True,
                         timeout=180, cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    # this submission's own folder: another submission meanwhile exports into its own
    work = Path({p["name"]: p["default"] for p in tpl["parameterDefinitions"]}["WorkDir"])
    assert work.parent == tmp_path / "hdmatt_farm" / "shot020_HDMatt1"
    assert (work / "matte_job.json").exists()
    assert sorted(p.name for p in work.glob("*.exr")) == \
        ["plate.0001.exr", "plate.0002.exr", "trimap.0001.exr", "trimap.0002.exr"]
    assert "frame 1 done from cache" in log  # made interactively, reused on the farm
    trimap = trimap_pixels()[..., 3]
    for f in (1, 2):
        alpha = read_exr(tmp_path / "hdmatt" / "shot020" / "HDMatt1" / f"alpha.{f:04d}.exr")["A"]
        comp = read_exr(tmp_path / "comp" / f"comp.{f:04d}.exr")
        assert np.array_equal(comp["A"], alpha)
        assert np.all(alpha[trimap == 0] == 0) and np.all(alpha[trimap == 1] == 1)
        np.testing.assert_allclose(np.stack([comp["R"], comp["G"], comp["B"]], -1),
                                   plate_pixels(f), atol=1e-6)
    assert np.array_equal(read_exr(alpha1)["A"], interactive)
    # step 4 removes the exported inputs, not the alphas; a folder it did not make stays
    clean = subprocess.run([str(BIN / "openjd"), "run", str(job), "--step", "Cleanup"], env=env,
                           capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert clean.returncode == 0, (clean.stdout + clean.stderr)[-3000:]
    assert not work.exists() and alpha1.exists()
    other = tmp_path / "not_ours"
    other.mkdir()
    r = hdmatt("farm", "nuke", "--clean-work", other, env=env)
    assert r.returncode == 2 and "not a work folder" in r.stderr and other.exists()


def test_render_never_generates(farm_shot):
    """``nuke -x`` before any matte: an error naming the node and the frame (never black),
    no engine run, no nested execute."""
    tmp_path, script, env = farm_shot
    r = subprocess.run(["nuke", "-F", "1-2", "-X", "Write1", "-x", str(script)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "HDMatt1.alpha_read: Read error: " in r.stderr and "/HDMatt1/alpha.0001.exr" in r.stderr
    assert not (tmp_path / "comp" / "comp.0001.exr").exists()
    assert not (tmp_path / "hdmatt").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args, message", [
    (["--node", "Nope", "--write", "Write1"], "--node: no node named 'Nope'"),
    (["--node", "ReadPlate", "--write", "Write1"], "--node: ReadPlate is a Read, not an HDMatt"),
    (["--node", "HDMatt1", "--write", "ReadPlate"], "--write: no Write node named 'ReadPlate'"),
])
def test_bad_names_are_one_line_errors(farm_shot, args, message):
    tmp_path, script, env = farm_shot
    from nuke_hdmatt.farm import nuke_job
    r = subprocess.run([sys.executable, "-c", "import sys; from nuke_hdmatt.farm import nuke_job;"
                        " sys.exit(nuke_job.main(sys.argv[1:]))", str(script), *args,
                        "--frames", "1-2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == f"hdmatt: error: {script}: {message}" + \
        r.stderr.split(message, 1)[1]
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert nuke_job.PREPASS.endswith("nuke_hdmatt/nuke/prepass.py")


def test_prepass_errors_are_one_line(farm_shot):
    tmp_path, script, env = farm_shot
    from nuke_hdmatt.farm import nuke_job
    r = subprocess.run(["nuke", "-t", nuke_job.PREPASS, str(script), "--node", "Write1",
                        "--frames", "1-2", "--work", str(tmp_path / "w")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == f"hdmatt: error: {script}: no HDMatt node named 'Write1'\n"


def test_run_chunk_without_prepass_is_one_line(tmp_path):
    from nuke_hdmatt.farm import nuke_job
    assert nuke_job.main(["--run-chunk", str(tmp_path), "--frames", "1-2"]) == 2


def _farm_nuke(script, *args):
    return subprocess.run([sys.executable, "-c", "import sys; from nuke_hdmatt.farm import "
                           "nuke_job; sys.exit(nuke_job.main(sys.argv[1:]))", str(script),
                           "--node", "HDMatt1", "--write", "Write1", "--frames", "1-2", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--name", "shot {{x}}"], "--name: 'shot {{x}}' holds '{{'"),
    (["--nuke", ""], "--nuke is empty"),
    (["--job-output", ""], "--job-output is empty"),
])
def test_names_the_template_would_misread_are_refused(farm_shot, args, message):
    r = _farm_nuke(farm_shot[1], *args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == "", r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_script_named_with_braces_needs_a_job_name(farm_shot):
    tmp_path, script, _ = farm_shot
    odd = tmp_path / "sh{{x}}.nk"
    odd.write_bytes(script.read_bytes())
    r = _farm_nuke(odd)
    assert r.returncode == 2 and "give --name" in r.stderr, r.stderr
    r = _farm_nuke(odd, "--name", "shot 10")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["name"] == "shot 10"


def test_the_job_output_never_overwrites_the_script(farm_shot):
    tmp_path, script, env = farm_shot
    before = script.read_bytes()
    link = tmp_path / "same.nk"
    link.symlink_to(script)
    for target in (script, link):
        r = _farm_nuke(script, "--job-output", str(target))
        assert r.returncode == 2 and "--job-output: would overwrite the Nuke script" in r.stderr
    assert script.read_bytes() == before


def test_matte_step_threads_and_device(farm_shot):
    """A farm's tasks share machines: the Matte step takes --threads and --device (a CUDA
    device asks for a GPU host); a device the engine does not know is refused now, not on
    every task."""
    tmp_path, script, env = farm_shot
    import yaml
    r = _farm_nuke(script, "--threads", "4", "--device", "cuda:1", "--hdmatt", "hdmatt",
                   "--timeout", "7200")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    matte = next(s for s in doc["steps"] if s["name"] == "Matte")
    args = matte["script"]["actions"]["onRun"]["args"]
    assert args[-4:] == ["--threads", "4", "--device", "cuda:1"]
    # cuda:1 is a worker's second GPU
    assert matte["hostRequirements"]["amounts"] == [{"name": "amount.worker.gpu", "min": 2}]
    for step in doc["steps"]:  # a cancel is a SIGTERM first: hdmatt leaves no temp file
        assert step["script"]["actions"]["onRun"]["cancelation"]["mode"] == \
            "NOTIFY_THEN_TERMINATE"
        assert step["script"]["actions"]["onRun"]["timeout"] == 7200
    params = {p["name"]: p["default"] for p in doc["parameterDefinitions"]}
    assert params["HdmattExecutable"] == "hdmatt"       # a bare name: the worker's PATH
    r = _farm_nuke(script, "--nuke", "bin/Nuke15.1", "--hdmatt", "hdmatt")
    params = {p["name"]: p["default"] for p in yaml.safe_load(r.stdout)["parameterDefinitions"]}
    assert os.path.isabs(params["NukeExecutable"])      # a task runs in a folder of its own
    for bad, message in ((["--device", "gpu"], "--device: device must be auto, cpu or cuda"),
                         (["--threads", "0"], "--threads must be 1 to 1024"),
                         (["--timeout", "-5"], "--timeout must be"),
                         (["--work", "/var/tmp/hdmatt_work"], "--work: a temp folder")):
        r = _farm_nuke(script, *bad)
        assert r.returncode == 2 and message in r.stderr and r.stdout == ""
