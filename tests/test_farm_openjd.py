"""``hdmatt farm openjd``: the template passes ``openjd check`` and ``openjd run`` on a 4-frame
EXR sequence writes every output frame (each chunk runs the real ``hdmatt matte``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_fixtures import FAST, exr_sequence, hdmatt, hdmatt_env, read_image, temp_leftovers

VENV_BIN = Path(sys.executable).parent
OPENJD = shutil.which("openjd", path=str(VENV_BIN)) or shutil.which("openjd")
HDMATT = shutil.which("hdmatt", path=str(VENV_BIN))

pytestmark = pytest.mark.skipif(OPENJD is None or HDMATT is None,
                                reason="needs the openjd CLI (pip: openjd-cli) and an installed "
                                       "hdmatt console script (python3 install.py --dev)")


def _template(tmp_path, *extra):
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 3, 4])
    proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "out/alpha.####.exr",
                  "--frames", "1-4", "--chunk", "2", "--hdmatt", HDMATT, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_template_structure_and_openjd_check(tmp_path):
    text = _template(tmp_path, *FAST, "--plate-colorspace", "ACEScg", "--no-cache", "--no-flip")
    doc = yaml.safe_load(text)
    assert doc["specificationVersion"] == "jobtemplate-2023-09"
    assert "TASK_CHUNKING" in doc["extensions"]
    params = {p["name"]: p for p in doc["parameterDefinitions"]}
    assert params["HdmattExecutable"]["default"] == HDMATT
    assert params["Output"]["default"] == str(tmp_path / "out/alpha.####.exr")  # made absolute
    assert params["Frames"]["default"] == "1-4" and params["ChunkSize"]["default"] == 2
    [step] = doc["steps"]
    [frame] = step["parameterSpace"]["taskParameterDefinitions"]
    assert frame["type"] == "CHUNK[INT]" and frame["range"] == "{{Param.Frames}}"
    args = step["script"]["actions"]["onRun"]["args"]
    assert args[:2] == ["matte", "{{Param.Plate}}"]
    assert "--frames={{Task.Param.Frame}}" in args   # one word: negative chunks are no option
    assert args[args.index("--plate-colorspace") + 1] == "ACEScg" and "--no-cache" in args
    assert "--no-flip" in args and "--detail" not in args      # what was given, only that
    # a cancel sends SIGTERM first (hdmatt removes its temp files), not OpenJD's default kill
    assert step["script"]["actions"]["onRun"]["cancelation"] == {
        "mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30}
    (tmp_path / "job.yaml").write_text(text)
    check = subprocess.run([OPENJD, "check", str(tmp_path / "job.yaml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_openjd_run_writes_every_frame(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(_template(tmp_path, *FAST, "--cache", tmp_path / "cache"))
    run = subprocess.run([OPENJD, "run", str(job)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=hdmatt_env(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for f in (1, 2, 3, 4):
        spec, _ = read_image(tmp_path / f"out/alpha.{f:04d}.exr")
        assert "A" in spec.channelnames and spec.getattribute("hdmatt:frame") == f
    # two chunks of two frames: the engine ran once per chunk, not once per frame
    assert run.stdout.count("loaded in") == 2, run.stdout[-3000:]


def test_bundle_folder_for_deadline_cloud(tmp_path):
    # the template is checked against the shot as `matte` would check it: the files must exist
    exr_sequence(tmp_path, range(1001, 1100), size=16)
    proc = hdmatt(tmp_path, "farm", "openjd", "plate.####.exr", "trimap.####.exr", "-o", "a.####.exr",
                  "--frames", "1001-1100x2", "--chunk", "5", "--hdmatt", HDMATT,
                  "--bundle", "bundle")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "deadline bundle submit bundle" in proc.stderr
    doc = yaml.safe_load((tmp_path / "bundle/template.yaml").read_text())
    frames = {p["name"]: p["default"] for p in doc["parameterDefinitions"]}["Frames"]
    assert frames == "1001-1099:2"  # every other frame, as an OpenJD range expression
    assert temp_leftovers(tmp_path / "bundle") == []


def test_farm_needs_frames_and_a_trimap(tmp_path):
    proc = hdmatt(tmp_path, "farm", "openjd", "p.####.exr", "t.####.exr", "-o", "a.####.exr")
    assert proc.returncode == 2 and "--frames" in proc.stderr and "Traceback" not in proc.stderr
    proc = hdmatt(tmp_path, "farm", "openjd", "p.####.exr", "-o", "a.####.exr", "--frames", "1-2")
    assert proc.returncode == 2 and "trimap" in proc.stderr
    assert not os.listdir(tmp_path) or "a.####.exr" not in os.listdir(tmp_path)


def test_template_braces_in_a_value_are_refused(tmp_path):
    """``{{...}}`` in a task argument is an Open Job Description expression: ``openjd check``
    refused such a template ("Variable x does not exist"), so the TD learnt it at submission."""
    for extra, needle in ((["--cache", "/caches/{{x}}"], "--cache: '/caches/{{x}}'"),
                          (["--name", "shot {{010}}"], "--name: 'shot {{010}}'")):
        plate, trimap = exr_sequence(tmp_path / "in", [1, 2])
        proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "a.####.exr",
                      "--frames", "1-2", *extra)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and needle in err[0], proc.stderr
        assert "template expression" in err[0] and proc.stdout == ""


def test_range_expression_keeps_stepped_and_sparse_shots_short():
    from nuke_hdmatt.errors import UsageError
    from nuke_hdmatt.farm.openjd import range_expression
    from nuke_hdmatt.sequence import parse_frames
    cases = {(1001, 1002, 1003): "1001-1003", (1, 3, 5, 7, 20): "1-7:2,20",
             (5, 9): "5,9", (1, 2, 4, 6, 8): "1-2,4-8:2", (7,): "7"}
    for frames, text in cases.items():
        assert range_expression(list(frames)) == text
        assert parse_frames(text) == sorted(frames)          # what the tasks read back
    shot = list(range(1001, 1501, 2)) + [1600, 1603, 1700]
    assert range_expression(shot) == "1001-1499:2,1600,1603,1700"
    with pytest.raises(UsageError, match="over OpenJD's 1024"):
        range_expression([i * i for i in range(400)])         # no regular step at all


def test_a_stepped_shot_passes_openjd_check_and_chunks_by_chunk_size(tmp_path):
    """A comma list of every frame broke OpenJD's 1024-character limit (500 frames x2), and
    contiguous chunks ran a stepped shot one frame (one engine load) a task."""
    from nuke_hdmatt.farm.openjd import job_template, render_yaml
    doc = job_template(plate="/s/p.####.exr", trimap="/s/t.####.exr", output="/s/a.####.exr",
                       frames=list(range(1001, 2001, 2)), chunk=3, executable=HDMATT)
    (tmp_path / "job.yaml").write_text(render_yaml(doc))
    check = subprocess.run([OPENJD, "check", str(tmp_path / "job.yaml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # the real engine on frames 1, 3, 5, 7 in chunks of two: two loads, every frame written
    plate, trimap = exr_sequence(tmp_path / "in", [1, 3, 5, 7])
    proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "out/alpha.####.exr",
                  "--frames", "1-7x2", "--chunk", "2", "--hdmatt", HDMATT, *FAST, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    params = {p["name"]: p for p in yaml.safe_load(proc.stdout)["parameterDefinitions"]}
    assert params["Frames"]["default"] == "1-7:2"
    (tmp_path / "job2.yaml").write_text(proc.stdout)
    run = subprocess.run([OPENJD, "run", str(tmp_path / "job2.yaml")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=hdmatt_env(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("loaded in") == 2, run.stdout[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == [f"alpha.{f:04d}.exr" for f in (1, 3, 5, 7)]


def test_the_submitters_environment_reaches_the_tasks(tmp_path):
    """$OCIO and $HDMATT_WEIGHTS decided the checks at submission: the tasks get them as
    options (a worker without them would fail, or silently use other weights)."""
    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2])
    env = dict(hdmatt_env(tmp_path), OCIO="ocio://studio-config-latest",
               HDMATT_WEIGHTS=str(BUNDLED_WEIGHTS))
    proc = subprocess.run([HDMATT, "farm", "openjd", plate, trimap, "-o", "out/a.####.exr",
                           "--frames", "1-2", "--hdmatt", HDMATT, "--device", "cuda"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    [step] = yaml.safe_load(proc.stdout)["steps"]
    args = step["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--ocio") + 1] == "ocio://studio-config-latest"
    assert args[args.index("--weights") + 1] == str(BUNDLED_WEIGHTS)
    assert args.count("--ocio") == 1 and args.count("--weights") == 1   # once each
    assert step["hostRequirements"]["amounts"][0]["name"] == "amount.worker.gpu"
    assert "the tasks get --ocio" in proc.stderr
    for bad, message in ((["--device", "gpu"], "--device: device must be auto, cpu or cuda"),
                         (["--json-log", "x.jsonl"], "--json-log: not for farm openjd")):
        proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "out/a.####.exr",
                      "--frames", "1-2", *bad)
        assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""


def test_a_json_job_output_is_json_and_missing_frames_are_said_at_submission(tmp_path):
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2, 4])
    proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "out/a.####.exr",
                  "--frames", "1-4", "--hdmatt", HDMATT, "--job-output", "job.json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "job.json").read_text())
    assert doc["specificationVersion"] == "jobtemplate-2023-09"
    [warning] = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert "1 of the 4 frame(s)" in warning and "plate.0003.exr" in warning
    check = subprocess.run([OPENJD, "check", str(tmp_path / "job.json")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("option", ["--hdmatt", "--name", "--job-output", "--bundle"])
def test_an_empty_farm_option_is_refused(tmp_path, option):
    plate, trimap = exr_sequence(tmp_path / "in", [1, 2])
    proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "a.####.exr",
                  "--frames", "1-2", option, "")
    assert proc.returncode == 2 and f"{option} is empty" in proc.stderr and proc.stdout == ""


def test_awkward_paths_and_names_make_a_template_openjd_accepts(tmp_path):
    """A path with an emoji was written as a JSON surrogate pair, which is not YAML; a plate
    name over 128 characters made a job name OpenJD refuses; cuda:1 asked for one GPU."""
    folder = tmp_path / "sh ot 'q\" $HOME é😀"
    plate, trimap = exr_sequence(folder, [1, 2])
    long_plate = folder / ("p" * 120 + ".####.exr")
    for f in (1, 2):
        shutil.copy(plate.replace("####", f"{f:04d}"), str(long_plate).replace("####", f"{f:04d}"))
    proc = hdmatt(tmp_path, "farm", "openjd", long_plate, trimap, "-o",
                  folder / "out/a.####.exr", "--frames", "1-2", "--hdmatt", HDMATT,
                  "--cache", "~/farm cache", "--device", "cuda:1", "--timeout", "3600",
                  "--job-output", "job.yaml")
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([OPENJD, "check", str(tmp_path / "job.yaml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    doc = yaml.safe_load((tmp_path / "job.yaml").read_text(encoding="utf-8"))
    assert (tmp_path / "job.yaml").read_bytes().isascii()  # escaped, whatever the locale
    params = {p["name"]: p["default"] for p in doc["parameterDefinitions"]}
    assert params["Plate"] == str(long_plate) and len(doc["name"]) == 128
    [step] = doc["steps"]
    args = step["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--cache") + 1] == "~/farm cache"  # the worker's home, as matte
    assert step["hostRequirements"]["amounts"] == [{"name": "amount.worker.gpu", "min": 2}]
    assert step["script"]["actions"]["onRun"]["timeout"] == 3600  # a hung task frees its worker
    for bad, message in ((["--name", "shot\nA"], "control character"),
                         (["--name", "n" * 129], "129 characters"),
                         (["--timeout", "0"], "--timeout must be"),
                         (["--cache", "c\tache"], "control character"),  # OpenJD refuses
                         (["--device", "cuda:01"], "--device")):          # torch does
        proc = hdmatt(tmp_path, "farm", "openjd", plate, trimap, "-o", "o/a.####.exr",
                      "--frames", "1-2", "--hdmatt", HDMATT, *bad)
        assert proc.returncode == 2 and message in proc.stderr and proc.stdout == "", proc.stderr
