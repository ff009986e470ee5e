"""Bad input and faults against the real ``hdmatt`` command, the way a new user and a pipeline
TD try it. The "Reliability" section of docs/COMMAND_LINE.md promises exactly what is checked
here:

* bad input: exit 2 and ONE line ``hdmatt: error: ...`` naming the file, frame, channel or
  option, before the engine loads; no traceback;
* inputs are never written; a failed run leaves no output, no temp file, and never touches
  an existing output;
* cache problems slow a run down (one warning naming the folder), never stop it;
* Ctrl-C / SIGTERM at any moment: exit 130 / 143, no temp files.

Every case runs the real command line in a subprocess on tiny real files, and compares the
whole folder (every file's bytes) before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_fixtures import FAST, exr_sequence, hdmatt_env, make_frame, read_image, temp_leftovers, write_image

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
MODEL = Path(__file__).resolve().parents[1] / "nuke_hdmatt" / "model" / "hdmatt.safetensors"


# ---- the shot every case starts from -----------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """plate/trimap.0001-0002.exr, PNG still pair, odd files a TD would meet."""
    root = tmp_path_factory.mktemp("template")
    shot = root / "shot"
    exr_sequence(shot, [1, 2])
    plate, trimap = make_frame(0)
    write_image(shot / "p.png", np.clip(plate, 0, 1), "RGB", fmt="uint8")
    write_image(shot / "t.png", trimap, "Y", fmt="uint8")
    write_image(shot / "big.png", np.pad(trimap, 8), "Y", fmt="uint8")
    write_image(shot / "small.png", trimap[:40, :40], "Y", fmt="uint8")
    write_image(shot / "luma.exr", plate[..., 1], "Y")
    nan = trimap.copy()
    nan[3, 3] = np.nan
    write_image(shot / "nan.exr", nan, "Y", fmt="float")
    data = (shot / "plate.0001.exr").read_bytes()
    (shot / "truncated.exr").write_bytes(data[: len(data) // 2])
    for name in ("p.png", "p.jpg"):  # libpng prints its own line; libjpeg decodes grey rows
        if name.endswith(".jpg"):
            write_image(shot / name, np.clip(plate, 0, 1), "RGB", fmt="uint8")
        whole = (shot / name).read_bytes()
        (shot / ("truncated" + name[1:])).write_bytes(whole[: len(whole) * 2 // 3])
    (shot / "header_cut.png").write_bytes((shot / "t.png").read_bytes()[:60])
    (shot / "empty.exr").write_bytes(b"")
    (shot / "P.EXR").write_bytes(data)
    (shot / "huge.exr").write_bytes(_claim_size(data, 20000, 20000))
    (shot / "text.exr").write_text("not an image\n")
    (shot / "a_file").write_text("a file where a folder is expected\n")
    (shot / "folder.exr").mkdir()
    (shot / "sub").mkdir()
    weird = shot / "dir with spaces é"
    exr_sequence(weird, [1])
    return shot


def _claim_size(exr: bytes, width: int, height: int) -> bytes:
    """The EXR with data and display windows rewritten to claim ``width`` x ``height``."""
    data = bytearray(exr)
    for name in (b"dataWindow", b"displayWindow"):
        at = data.index(name + b"\x00box2i\x00") + len(name) + 7 + 4  # name, type, size
        data[at + 8:at + 16] = struct.pack("<2i", width - 1, height - 1)
    return bytes(data)


@pytest.fixture
def shot(template, tmp_path) -> Path:
    dst = tmp_path / "shot"
    shutil.copytree(template, dst, symlinks=True)
    return dst


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` -> sha256 of its bytes (None for folders)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link->" + os.readlink(p)
        elif p.is_dir():
            out[rel] = None
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_line(proc) -> str:
    """The one ``hdmatt: error:`` line, after checking it is the only thing said."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hdmatt: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def run_in(shot: Path, *args, timeout=120, env=None):
    """The real command line, run in the shot folder (relative paths as a user types them)."""
    return subprocess.run([sys.executable, "-m", "nuke_hdmatt.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=shot,
                          env=env or hdmatt_env(shot.parent))


SEQ = ["plate.####.exr", "trimap.####.exr"]
MATTE = ["matte", *SEQ, "-o", "out/a.####.exr", "--no-cache"]


def _symlink_folder(shot):
    (shot / "link").symlink_to(shot, target_is_directory=True)


def _hard_link_output(shot):
    os.link(shot / "plate.0001.exr", shot / "alias.0001.exr")


def _symlink_output(shot):
    (shot / "alias.0001.exr").symlink_to(shot / "plate.0001.exr")


def _previous_output(shot):
    (shot / "out").mkdir()
    (shot / "out/a.0001.exr").write_bytes(b"previous output")


def _bad_weights(shot):
    data = bytearray(MODEL.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit deep in the tensors
    (shot / "w.safetensors").write_bytes(bytes(data))
    shutil.copy(str(MODEL) + ".sha256", shot / "w.safetensors.sha256")


def _garbage_weights(shot):
    (shot / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")


# A name that is not UTF-8 (POSIX allows any bytes): Python keeps them as surrogate escapes,
# subprocess passes the original bytes, the error line shows U+FFFD.
NOT_UTF8 = os.fsdecode(b"bad\xffname.png")


def _not_utf8_plate(shot):
    shutil.copy(shot / "p.png", shot / NOT_UTF8)


def _ocio_junk(shot):
    (shot / "bad.ocio").write_text("ocio_profile_version: 2\nroles: {{{\n")


def _ocio_without_scene_linear(shot):
    (shot / "min.ocio").write_text(
        "ocio_profile_version: 2\nroles:\n  default: sRGB\n  data: raw\ndisplays:\n"
        "  sRGB:\n    - !<View> {name: Raw, colorspace: raw}\ncolorspaces:\n"
        "  - !<ColorSpace>\n    name: sRGB\n  - !<ColorSpace>\n    name: raw\n    isdata: true\n")


# (id, arguments, setup, words the error line must hold). Exit code 2 for all.
CASES = [
    # 1: an output that IS an input, however it is spelled
    ("output-printf-is-plate", ["matte", *SEQ, "-o", "plate.%04d.exr", "--frames", "1"], None,
     ["overwrite an input", "plate.0001.exr"]),
    ("output-through-symlinked-folder", ["matte", *SEQ, "-o", "link/plate.####.exr"],
     _symlink_folder, ["overwrite an input"]),
    ("output-with-dotdot", ["matte", *SEQ, "-o", "sub/../trimap.####.exr"], None,
     ["overwrite an input", "trimap.0001.exr"]),
    ("output-hard-link-to-plate", ["matte", *SEQ, "-o", "alias.####.exr", "--frames", "1"],
     _hard_link_output, ["overwrite an input", "frame 1"]),
    ("output-symlink-to-plate", ["matte", *SEQ, "-o", "alias.####.exr", "--frames", "1"],
     _symlink_output, ["overwrite an input"]),
    ("still-output-is-trimap", ["matte", "p.png", "t.png", "-o", "./t.png"], None,
     ["overwrite an input", "t.png"]),
    ("json-log-is-plate", [*MATTE, "--json-log", "plate.0001.exr"], None,
     ["--json-log", "plate.0001.exr"]),
    # another frame of an input, outside the frames of the run, is an input too
    ("output-is-another-plate-frame", ["matte", *SEQ, "-o", "plate.0001.exr", "--frames", "2"],
     None, ["overwrite an input", "plate.0001.exr"]),
    ("output-is-another-trimap-frame", ["matte", *SEQ, "-o", "out/../trimap.0002.exr",
                                        "--frames", "1"], None,
     ["overwrite an input", "trimap.0002.exr"]),
    ("output-hard-link-to-another-frame", ["matte", *SEQ, "-o", "alias.0001.exr", "--frames",
                                           "2"], _hard_link_output,
     ["overwrite an input", "plate.0001.exr"]),
    ("json-log-is-another-plate-frame", [*MATTE, "--frames", "1", "--json-log",
                                         "plate.0002.exr"], None,
     ["--json-log", "plate.0002.exr"]),
    # 4: sizes
    ("trimap-larger-than-plate", ["matte", "p.png", "big.png", "-o", "a.png"], None,
     ["big.png", "64x64", "48x48"]),
    ("trimap-smaller-than-plate", ["matte", "p.png", "small.png", "-o", "a.png"], None,
     ["small.png", "40x40", "48x48"]),
    ("matte-larger-than-plate", ["matte", "p.png", "--trimap-from-matte", "big.png", "-o", "a.png"],
     None, ["big.png", "64x64", "48x48"]),
    # 5 and the other engine settings, refused before torch loads
    ("patch-4096", [*MATTE, "--patch", "4096"], None, ["--patch", "4096", "1024"]),
    ("patch-0", [*MATTE, "--patch", "0"], None, ["--patch", "0"]),
    ("patch-not-multiple-of-8", [*MATTE, "--patch", "100"], None, ["--patch", "100"]),
    ("overlap-too-large", [*MATTE, "--overlap", "1000"], None, ["--overlap", "1000"]),
    ("k-zero", [*MATTE, "--k", "0"], None, ["--k", "0"]),
    ("pool-huge", [*MATTE, "--pool", "100000"], None, ["--pool", "100000"]),
    ("snap-too-large", [*MATTE, "--snap", "0.5"], None, ["--snap", "0.5", "0.25"]),
    ("snap-not-a-number", [*MATTE, "--snap", "half"], None, ["--snap", "half"]),
    ("threads-100000", [*MATTE, "--threads", "100000"], None, ["--threads", "100000", "1024"]),
    # 8: output locations, checked before the engine loads
    ("output-folder-is-a-file", ["matte", *SEQ, "-o", "a_file/a.####.exr"], None,
     ["a_file", "output folder"]),
    ("output-is-a-folder", ["matte", "p.png", "t.png", "-o", "folder.exr"], None,
     ["folder.exr", "is a folder"]),
    ("bad-layer", [*MATTE, "--layer=a b"], _previous_output, ["layer", "a b"]),
    # a dot splits the layer (bad.name.alpha); depth.alpha joins Nuke's own depth layer
    ("alpha-only-on-a-png", ["matte", "p.png", "t.png", "-o", "a.png", "--alpha-only"], None,
     ["--alpha-only", "PNG"]),
    ("layer-with-a-dot", [*MATTE, "--layer", "bad.name"], None, ["--layer", "bad.name"]),
    ("layer-of-nukes-own", [*MATTE, "--layer", "depth"], None, ["--layer", "depth"]),
    ("bad-output-extension", ["matte", *SEQ, "-o", "out/a.####.jpg"], None, [".jpg"]),
    ("output-dash", ["matte", "p.png", "t.png", "-o", "-"], None, ["extension"]),
    ("output-without-extension", ["matte", "p.png", "t.png", "-o", "alpha"], None,
     ["alpha", "extension"]),
    ("bad-compression", [*MATTE, "--compression", "lzma"], _previous_output, ["lzma"]),
    # 12, 15: frame lists
    ("frames-empty", [*MATTE, "--frames", ""], None, ["--frames", "empty"]),
    ("frames-blank", [*MATTE, "--frames", "   "], None, ["--frames", "empty"]),
    ("frames-30-million", [*MATTE, "--frames", "1-30000000"], None,
     ["30000000 frames", "2 frame(s) of plate.####.exr on disk (1-2)"]),
    ("frames-past-sys-maxsize", [*MATTE, "--frames", "1-99999999999999999999999"], None,
     ["--frames", "99999999999999999999999 frames", "(1-2)"]),
    ("frames-outside-sequence", [*MATTE, "--frames", "5-9"], None, ["5 of the 5", "(1-2)"]),
    # a single input file every frame reads, missing; no frame with all its inputs
    ("single-plate-missing-for-a-sequence", ["matte", "nope.exr", "trimap.####.exr", "-o",
                                             "a.####.exr", "--frames", "1-2"], None,
     ["nope.exr", "file not found"]),
    ("no-frame-has-its-trimap", ["matte", "plate.####.exr", "none.####.exr", "-o",
                                 "a.####.exr", "--frames", "1-2"], None,
     ["none of the 2 frame(s)", "none.0001.exr: file not found"]),
    ("frames-backwards", [*MATTE, "--frames", "2-1"], None, ["--frames", "2-1"]),
    ("frames-garbage", [*MATTE, "--frames", "one"], None, ["--frames", "one"]),
    ("single-output-many-frames", ["matte", *SEQ, "-o", "a.exr"], None, ["a.exr", "2 frames"]),
    # 13: argparse mistakes are one line too
    ("unknown-option", [*MATTE, "--bogus"], None, ["--bogus", "--help"]),
    ("not-an-integer", [*MATTE, "--patch", "big"], None, ["--patch", "big", "--help"]),
    ("detail-not-a-number", [*MATTE, "--detail", "abc"], None, ["--detail", "'abc'", "auto or a number"]),
    ("no-output", ["matte", *SEQ], None, ["-o", "--help"]),
    ("bad-choice", [*MATTE, "--prior", "magic"], None, ["--prior", "magic"]),
    ("no-command", [], None, ["--help"]),
    # inputs a TD will meet
    ("plate-missing", ["matte", "nope.png", "t.png", "-o", "a.png"], None, ["nope.png", "not found"]),
    ("plate-truncated", ["matte", "truncated.exr", "t.png", "-o", "a.png"], None, ["truncated.exr"]),
    ("plate-png-truncated", ["matte", "truncated.png", "t.png", "-o", "a.png"], None,
     ["truncated.png", "truncated or corrupt"]),
    ("trimap-png-cut-in-its-header", ["matte", "p.png", "header_cut.png", "-o", "a.png"], None,
     ["header_cut.png"]),
    ("plate-jpeg-truncated", ["matte", "truncated.jpg", "t.png", "-o", "a.png"], None,
     ["truncated.jpg", "Premature end"]),
    ("plate-empty-file", ["matte", "empty.exr", "t.png", "-o", "a.png"], None, ["empty.exr"]),
    ("plate-is-text", ["matte", "text.exr", "t.png", "-o", "a.png"], None, ["text.exr"]),
    ("plate-header-claims-20000x20000", ["matte", "huge.exr", "t.png", "-o", "a.png"], None,
     ["huge.exr"]),
    ("plate-is-a-folder", ["matte", "folder.exr", "t.png", "-o", "a.png"], None,
     ["folder.exr", "folder"]),
    ("plate-luminance-only", ["matte", "luma.exr", "t.png", "-o", "a.png"], None,
     ["luma.exr", "R", "Y"]),
    ("trimap-with-nan", ["matte", "p.png", "nan.exr", "-o", "a.png"], None, ["nan.exr", "NaN"]),
    ("plate-channel-missing", [*MATTE, "--plate-channels", "R,G,nope"], None,
     ["nope", "plate.0001.exr", "frame 1"]),
    ("unknown-colour-space", [*MATTE, "--plate-colorspace", "NotASpace"], None, ["NotASpace"]),
    ("ocio-config-missing", [*MATTE, "--ocio", "missing.ocio"], None, ["missing.ocio"]),
    ("ocio-uri-unknown", [*MATTE, "--ocio", "ocio://no-such-config"], None,
     ["ocio://no-such-config"]),
    ("ocio-config-junk", [*MATTE, "--ocio", "bad.ocio"], _ocio_junk, ["bad.ocio"]),
    # the foreground works in linear light: refused before the first frame is computed
    ("ocio-no-scene-linear-foreground", [*MATTE, "--ocio", "min.ocio", "--plate-colorspace",
     "sRGB", "--exposure", "off", "--foreground", "fg"],
     _ocio_without_scene_linear, ["min.ocio", "scene_linear"]),
    ("ocio-no-scene-linear-exposure", [*MATTE, "--ocio", "min.ocio", "--plate-colorspace",
     "sRGB"], _ocio_without_scene_linear,
     ["min.ocio", "scene_linear", "--exposure off"]),
    ("cache-empty", ["matte", *SEQ, "-o", "out/a.####.exr", "--cache", ""], None,
     ["--cache is empty"]),
    ("weights-empty", [*MATTE, "--weights", ""], None, ["--weights is empty"]),
    ("plate-empty-name", ["matte", "", "t.png", "-o", "a.png"], None, ["PLATE is empty"]),
    ("band-without-matte", [*MATTE, "--band", "4"], None, ["--band"]),
    ("band-wider-than-frame", ["matte", "p.png", "--trimap-from-matte", "t.png", "-o", "a.png",
                               "--band", "99999999"], None, ["--band", "99999999", "48x48"]),
    ("foreground-empty", [*MATTE, "--foreground", ""], None, ["--foreground is empty"]),
    ("plate-name-not-utf8", ["matte", NOT_UTF8, "t.png", "-o", "a.png"], _not_utf8_plate,
     ["bad\ufffdname.png", "not valid UTF-8"]),
    ("output-name-not-utf8", ["matte", *SEQ, "-o", os.fsdecode(b"o\xfe.####.exr")], None,
     ["o\ufffd.####.exr", "not valid UTF-8"]),
    ("band-negative", ["matte", "p.png", "--trimap-from-matte", "t.png", "-o", "a.png", "--band",
                       "-3"], None, ["--band", "-3"]),
    ("uppercase-extension-bad-channel", ["matte", "P.EXR", "t.png", "-o", "A.PNG",
                                         "--plate-channels", "R,G,Q"], None, ["P.EXR", "Q"]),
    ("trimap-and-matte", [*MATTE, "--trimap-from-matte", "t.png"], None, ["either"]),
    ("spaces-and-accents-bad-channel", ["matte", "dir with spaces é/plate.####.exr",
                                        "dir with spaces é/trimap.####.exr", "-o", "o.####.exr",
                                        "--trimap-channel", "Z"], None,
     ["dir with spaces é/trimap.0001.exr", "Z"]),
    ("json-log-folder-missing", [*MATTE, "--json-log", "no/such/log.jsonl"], None,
     ["--json-log", "no/such/log.jsonl"]),
    # 14: weights
    ("weights-missing", [*MATTE, "--weights", "none.safetensors"], None, ["none.safetensors"]),
    ("weights-flipped-bit", [*MATTE, "--weights", "w.safetensors"], _bad_weights,
     ["w.safetensors", "sha256"]),
    ("weights-garbage", [*MATTE, "--weights", "junk.safetensors"], _garbage_weights,
     ["junk.safetensors"]),
    # 6: farm openjd refuses what every task would refuse, before printing a template
    ("farm-single-output", ["farm", "openjd", *SEQ, "-o", "a.exr", "--frames", "1-2",
                            "--hdmatt", "hdmatt"], None, ["a.exr", "2 frames"]),
    ("farm-frames-outside", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "1-3",
                             "--hdmatt", "hdmatt"], None, ["1 of the 3"]),
    ("farm-output-is-input", ["farm", "openjd", *SEQ, "-o", "plate.%04d.exr", "--frames", "1-2",
                              "--hdmatt", "hdmatt"], None, ["overwrite an input"]),
    ("farm-patch-0", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "1-2", "--patch",
                      "0", "--hdmatt", "hdmatt"], None, ["--patch"]),
    ("farm-bad-channel", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "1-2",
                          "--plate-channels", "X,Y,Z", "--hdmatt", "hdmatt"], None, ["X"]),
    ("farm-frames-empty", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "",
                           "--hdmatt", "hdmatt"], None, ["--frames"]),
    ("farm-template-over-plate", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "1-2",
                                  "--hdmatt", "hdmatt", "--job-output", "plate.0001.exr"], None,
     ["plate.0001.exr", "overwrite an input"]),
    ("farm-weights-damaged", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames", "1-2",
                              "--hdmatt", "hdmatt", "--weights", "w.safetensors"], _bad_weights,
     ["w.safetensors", "sha256"]),
    ("farm-frames-past-sys-maxsize", ["farm", "openjd", *SEQ, "-o", "a.####.exr", "--frames",
                                      "1-99999999999999999999999", "--hdmatt", "hdmatt"], None,
     ["--frames", "99999999999999999999999 frames"]),
    ("farm-template-over-another-frame", ["farm", "openjd", *SEQ, "-o", "a.####.exr",
                                          "--frames", "1", "--hdmatt", "hdmatt",
                                          "--job-output", "trimap.0002.exr"], None,
     ["trimap.0002.exr", "overwrite an input"]),
    ("farm-bundle-is-a-file", ["farm", "openjd", *SEQ, "-o", "out/a.####.exr", "--frames", "1-2",
                               "--hdmatt", "hdmatt", "--bundle", "p.png"], None,
     ["--bundle", "p.png", "not a folder"]),
    ("farm-bundle-under-a-file", ["farm", "openjd", *SEQ, "-o", "out/a.####.exr", "--frames",
                                  "1-2", "--hdmatt", "hdmatt", "--bundle", "a_file/bundle"], None,
     ["--bundle", "a_file/bundle"]),
    # other commands
    ("info-missing-file", ["info", "nope.exr"], None, ["nope.exr"]),
    ("info-name-not-utf8", ["info", NOT_UTF8], _not_utf8_plate,
     ["bad\ufffdname.png", "not valid UTF-8"]),
    ("cache-gc-bad-size", ["cache", "gc", "--max-size", "lots"], None, ["lots"]),
    ("cache-gc-size-nan", ["cache", "gc", "--max-size", "nan"], None, ["--max-size", "nan"]),
    ("cache-gc-size-zero", ["cache", "gc", "--max-size", "0"], None, ["--max-size 0", "cache clear"]),
    ("cache-ls-no-such-user", ["cache", "ls", "--cache", "~nosuchuser_hdmatt/c"], None,
     ["cache folder", "~nosuchuser_hdmatt"]),
    ("cache-gc-size-1e400", ["cache", "gc", "--max-size", "1e400"], None,
     ["--max-size", "1e400"]),
    ("demo-into-a-file", ["demo", "-o", "p.png"], None, ["-o", "p.png", "not a folder"]),
    ("demo-under-a-file", ["demo", "-o", "a_file/demo"], None, ["-o", "a_file/demo"]),
    ("demo-output-empty", ["demo", "-o", ""], None, ["-o is empty"]),
    ("demo-bad-device", ["demo", "-o", "dm/new", "--device", "nope"], None, ["nope"]),
    ("demo-damaged-weights", ["demo", "-o", "dm", "--weights", "w.safetensors"], _bad_weights,
     ["w.safetensors", "sha256"]),
    # found only when the network loads, after the plate was written: removed again
    ("demo-garbage-weights", ["demo", "-o", "dm/new", "--weights", "junk.safetensors", "--quiet"],
     _garbage_weights, ["junk.safetensors"]),
]


@pytest.mark.parametrize("name, args, setup, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(shot, name, args, setup, needles):
    if setup is not None:
        setup(shot)
    before = snapshot(shot)
    t0 = time.monotonic()
    proc = run_in(shot, *args)
    seconds = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    for needle in needles:
        assert needle in line, line
    assert snapshot(shot) == before  # inputs intact, no output, no temp file, nothing new
    if name == "frames-30-million":
        assert seconds < 30, seconds  # counted, not expanded


@pytest.mark.skipif(ROOT, reason="root may read and write anything: permissions cannot fail")
@pytest.mark.parametrize("what", ["plate", "output-folder"])
def test_permission_problems_as_a_user(shot, what):
    if what == "plate":
        os.chmod(shot / "plate.0001.exr", 0)
        args, needles = MATTE, ["plate.0001.exr"]
    else:
        (shot / "ro").mkdir()
        os.chmod(shot / "ro", 0o555)
        args, needles = ["matte", *SEQ, "-o", "ro/a.####.exr"], ["ro"]
    before = snapshot(shot)
    try:
        proc = run_in(shot, *args)
        assert proc.returncode == 2, proc.stderr
        line = error_line(proc)
        assert all(n in line for n in needles), line
        assert snapshot(shot) == before
    finally:
        os.chmod(shot / "plate.0001.exr", 0o644)


@pytest.mark.skipif(ROOT, reason="root may list any folder")
def test_an_output_folder_that_can_be_written_but_not_listed(shot):
    """A drop box (mode 0333): listing it raised PermissionError, an internal error."""
    (shot / "drop").mkdir()
    os.chmod(shot / "drop", 0o333)
    try:
        proc = run_in(shot, "matte", *SEQ, "-o", "drop/a.####.exr", *FAST, "--no-cache")
        assert proc.returncode == 0, proc.stderr
        assert (shot / "drop/a.0002.exr").exists()
    finally:
        os.chmod(shot / "drop", 0o755)


# ---- faults that must not stop a run --------------------------------------------------------
def _warnings(proc) -> list[str]:
    lines = [ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()]
    assert all(ln.startswith("hdmatt: warning: ") for ln in lines), proc.stderr  # one form
    return lines


def test_unusable_cache_warns_once_and_the_shot_is_written(shot):
    (shot / "cachefile").write_text("HDMATT_CACHE points at a file\n")
    env = {**hdmatt_env(shot.parent), "HDMATT_CACHE": str(shot / "cachefile")}
    proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--json-log", "log.jsonl",
                  env=env)
    assert proc.returncode == 0, proc.stderr
    warned = [ln for ln in _warnings(proc) if "cache" in ln]
    assert len(warned) == 1 and "cachefile" in warned[0], proc.stderr
    # the same line for the Nuke node and farm parsers that follow the JSON log
    events = [json.loads(ln) for ln in (shot / "log.jsonl").read_text().splitlines()]
    assert [ev["text"] for ev in events if ev["event"] == "warning"] == \
        [warned[0].removeprefix("hdmatt: warning: ")]
    assert (shot / "out/a.0001.exr").exists() and (shot / "out/a.0002.exr").exists()
    assert temp_leftovers(shot) == []


def test_a_cache_folder_that_cannot_be_found_warns_once_and_the_shot_is_written(shot):
    """``~user`` of no user (or no home folder for the default): Path raised RuntimeError,
    an internal error, exit 3."""
    env = {**hdmatt_env(shot.parent), "HDMATT_CACHE": "~nosuchuser_hdmatt/c"}
    proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, env=env)
    assert proc.returncode == 0, proc.stderr
    warned = _warnings(proc)
    assert len(warned) == 1 and "~nosuchuser_hdmatt" in warned[0], proc.stderr
    assert (shot / "out/a.0002.exr").exists()


@pytest.mark.skipif(ROOT, reason="root may look into any folder")
def test_a_cache_inside_a_folder_no_one_may_look_into_warns_once(shot):
    (shot / "locked").mkdir()
    os.chmod(shot / "locked", 0)
    try:
        proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache",
                      "locked/inner/c")
        assert proc.returncode == 0, proc.stderr
        assert len([w for w in _warnings(proc) if "cache" in w]) == 1, proc.stderr
        assert (shot / "out/a.0002.exr").exists()
    finally:
        os.chmod(shot / "locked", 0o755)


def test_the_cache_size_limit_reaches_a_run(shot):
    """``$HDMATT_CACHE_MAX_SIZE`` holds for the command line (and so for the Nuke node and
    the farm, which run it): under a limit no frame fits, nothing stays, quietly."""
    cache = shot / "small_cache"
    env = {**hdmatt_env(shot.parent), "HDMATT_CACHE_MAX_SIZE": "1K"}
    proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache", cache, env=env)
    assert proc.returncode == 0 and _warnings(proc) == [], proc.stderr
    assert (shot / "out/a.0002.exr").exists()
    assert not [p for p in cache.rglob("*") if p.is_file()]     # each entry trimmed away
    env["HDMATT_CACHE_MAX_SIZE"] = "1G"
    proc = run_in(shot, "matte", *SEQ, "-o", "out/b.####.exr", *FAST, "--cache", cache, env=env)
    assert proc.returncode == 0 and len(list(cache.rglob("*.alpha"))) == 2


def test_a_cache_size_limit_that_is_no_number_warns_once_and_the_shot_is_written(shot):
    """float() reads nan, inf and 1e400; the limit they gave was an internal error."""
    env = {**hdmatt_env(shot.parent), "HDMATT_CACHE_MAX_SIZE": "nan"}
    proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache", "c", env=env)
    assert proc.returncode == 0, proc.stderr
    warned = _warnings(proc)
    assert len(warned) == 1 and "HDMATT_CACHE_MAX_SIZE='nan' is not a size" in warned[0], \
        proc.stderr
    assert (shot / "out/a.0002.exr").exists() and len(list((shot / "c").rglob("*.alpha"))) == 2


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_cache_folder_warns_once_and_the_shot_is_written(shot):
    (shot / "ro_cache").mkdir()
    os.chmod(shot / "ro_cache", 0o555)
    try:
        proc = run_in(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache", "ro_cache")
    finally:
        os.chmod(shot / "ro_cache", 0o755)
    assert proc.returncode == 0, proc.stderr
    warned = [ln for ln in _warnings(proc) if "cache" in ln]
    assert len(warned) == 1 and "ro_cache" in warned[0], proc.stderr
    assert (shot / "out/a.0002.exr").exists() and temp_leftovers(shot) == []


def test_unreadable_cache_entry_is_a_miss_with_one_warning(shot):
    cache = shot / "cache"
    args = ["matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache", cache]
    assert run_in(shot, *args).returncode == 0
    entries = sorted(cache.rglob("*.alpha"))
    assert len(entries) == 2
    mode = entries[0].stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # readable by the group as any file is, not mkstemp's 0600
    for entry in entries:  # another user's entry we cannot read (works as root too)
        entry.unlink()
        entry.mkdir()
    proc = run_in(shot, *args)
    assert proc.returncode == 0, proc.stderr
    # (a folder in the entry's place cannot be replaced either: a second, write warning)
    warned = [ln for ln in _warnings(proc) if "cannot read" in ln]
    assert len(warned) == 1 and str(cache) in warned[0], proc.stderr
    assert "hdmatt: 2 frame(s) written\n" in proc.stderr  # recomputed, none from the cache


def test_degenerate_frames_give_an_alpha_quietly_and_stdout_stays_empty(shot):
    """1-pixel rows and columns, a 1x1 frame, a trimap without unknown pixels (7, 11, 15)
    and one without known pixels; a plate with NaN and inf values (said once, naming it)."""
    rng = np.random.default_rng(1)
    sizes = {1: (1, 300), 2: (300, 1), 3: (1, 1), 4: (2, 3), 5: (16, 16), 6: (24, 24),
             7: (20, 20), 8: (20, 20)}
    folder = shot / "tiny"
    folder.mkdir()
    for frame, (h, w) in sizes.items():
        plate = rng.random((h, w, 3))
        if frame == 7:
            plate[2, 3] = [np.nan, np.inf, -np.inf]   # a render's bad pixel: said once
        write_image(folder / f"p.{frame}.exr", plate, "RGB", fmt="float")
        tri = np.full((h, w), 0.5, np.float32)
        tri.reshape(-1)[:1] = 0.0
        tri.reshape(-1)[-1:] = 1.0
        if frame == 5:
            tri[:] = 1.0
            tri[:, :8] = 0.0  # nothing unknown
        if frame == 6:
            tri[:] = 0.5      # nothing known: a matte with no anchor, said once
        if frame == 8:
            tri[:] = 0.5
            tri[5:15, 5:15] = 1.0   # no background marked: judged by colour, said once
        write_image(folder / f"t.{frame}.exr", tri, "Y")
    proc = run_in(shot, "matte", "tiny/p.#.exr", "tiny/t.#.exr", "-o", "tiny/a.#.exr", *FAST,
                  "--no-cache", "--quiet", "--prior", "global", "--json-log", "tiny.jsonl",
                  timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # PyMatting's PERFORMANCE WARNING blocks never reach stdout
    assert "PERFORMANCE WARNING" not in proc.stderr  # nor stderr with --quiet
    assert "Traceback" not in proc.stderr
    for frame, (h, w) in sizes.items():
        spec, alpha = read_image(folder / f"a.{frame}.exr")
        assert (spec.width, spec.height) == (w, h)
        assert np.isfinite(alpha[..., 3]).all()  # the plate channels pass through as they are
    _, alpha = read_image(folder / "a.5.exr")
    np.testing.assert_array_equal(alpha[..., 3], np.where(np.arange(16) < 8, 0.0, 1.0)[None].repeat(16, 0))
    notice = [ln for ln in proc.stderr.splitlines() if "no unknown pixel" in ln]
    # the 1x1 frame's only pixel is foreground: nothing unknown there either
    assert len(notice) == 2 and "t.3.exr" in notice[0] and "t.5.exr" in notice[1], proc.stderr
    unanchored = [ln for ln in proc.stderr.splitlines() if "every pixel of the trimap is unknown" in ln]
    assert len(unanchored) == 1 and unanchored[0].startswith("hdmatt: warning: ") \
        and "t.6.exr" in unanchored[0], proc.stderr
    one_sided = [ln for ln in proc.stderr.splitlines() if "marks no background" in ln]
    assert len(one_sided) == 1 and "t.8.exr" in one_sided[0], proc.stderr
    replaced = [ln for ln in proc.stderr.splitlines() if "non-finite" in ln]
    assert len(replaced) == 1 and replaced[0].startswith("hdmatt: warning: ") \
        and "p.7.exr" in replaced[0] and "3 non-finite" in replaced[0], proc.stderr
    # closed-form cannot solve 1-pixel strips; shared matting can, and its alpha is the prior
    assert "classical prior failed" not in proc.stderr, proc.stderr
    # the warnings reach the JSON log too, with their frame, for the Nuke node
    events = [json.loads(ln) for ln in (shot / "tiny.jsonl").read_text().splitlines()]
    said = [ev for ev in events if ev["event"] == "warning" and "marks no background" in ev["text"]]
    assert [ev["frame"] for ev in said] == [8]
    assert temp_leftovers(shot) == []


def test_an_engine_warning_reaches_the_json_log_with_its_frame(tmp_path):
    """A Python warning of the engine's (a fallback) is the run's: stderr and the JSON log."""
    import io
    import warnings

    from nuke_hdmatt.shot.progress import ProgressReporter
    from nuke_hdmatt.shot.workflow import _warnings_to
    log = tmp_path / "log.jsonl"
    reporter = ProgressReporter(1, stream=io.StringIO(), json_log=str(log))
    reporter.frame_start(1001)
    with _warnings_to(reporter):
        warnings.warn("classical prior failed on the 1x300 frame", RuntimeWarning)
    reporter.close()
    assert "hdmatt: warning: classical prior failed" in reporter.stream.getvalue()
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [(e["frame"], e["text"]) for e in events if e["event"] == "warning"] == \
        [(1001, "classical prior failed on the 1x300 frame")]


def test_stale_temp_files_of_killed_runs_are_removed_from_the_output_folder(shot):
    out = shot / "out"
    out.mkdir()
    old = out / ".a.0001.k3j9x2ab.tmp.exr"
    fresh = out / ".a.0002.q8w7e6r5.tmp.exr"
    foreign = out / ".notes.k3j9x2ab.tmp.exr"
    for p in (old, fresh, foreign):
        p.write_bytes(b"x" * 1000)
    two_days = time.time() - 2 * 86400
    for p in (old, foreign):
        os.utime(p, (two_days, two_days))
    # a run that gets past the checks (the weights then fail) still tidies the output folder
    proc = run_in(shot, *MATTE, "--weights", "none.safetensors")
    assert proc.returncode == 2 and "none.safetensors" in proc.stderr
    assert not old.exists()
    assert fresh.exists() and foreign.exists()  # a live write; not ours


# ---- Ctrl-C and SIGTERM --------------------------------------------------------------------
def _start(shot, *args):
    return subprocess.Popen([sys.executable, "-m", "nuke_hdmatt.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=shot,
                            env=hdmatt_env(shot.parent))


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.2, 2.0, 3.5])
def test_ctrl_c_at_any_moment_of_start_up_exits_130(shot, delay):
    proc = _start(shot, "matte", *SEQ, "-o", "out/a.####.exr", *FAST, "--cache", shot / "cache")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(f"the run finished within {delay}s, before the signal")
    # A signal that lands while the interpreter itself still starts (before any hdmatt code
    # runs, possible on a loaded machine) kills Python by SIGINT, which a shell also reports
    # as 130; from main() on it is exit 130 with one line.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "internal error" not in err
    if proc.returncode == 130:
        assert "Traceback" not in err
    assert temp_leftovers(shot) == []


def test_sigterm_mid_frame_exits_143_and_leaves_no_temp_files(shot):
    plate, trimap = make_frame(3, size=320)
    write_image(shot / "big_plate.exr", plate, "RGB")
    write_image(shot / "big_trimap.exr", np.where(trimap == 1.0, 0.5, trimap), "Y")
    proc = _start(shot, "matte", "big_plate.exr", "big_trimap.exr", "-o", "out/big.exr",
                  "--patch", "32", "--overlap", "8", "--no-cache", "--prior", "global")
    seen = ""
    deadline = time.monotonic() + 120
    while "patches" not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    assert "patches" in seen, seen
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, seen + err
    assert "Traceback" not in err
    assert not (shot / "out/big.exr").exists()
    assert temp_leftovers(shot) == []


def test_ctrl_c_that_surfaces_as_another_error_is_still_exit_130(monkeypatch, capsys):
    """Ctrl-C inside an import (torch's C extensions) can surface as ``ImportError:
    initialization failed``; it is reported as the interrupt it was, not an internal error."""
    import types

    from nuke_hdmatt import cli

    def interrupted_import(argv):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
    mod = types.ModuleType("nuke_hdmatt.evaluation")
    mod.main = interrupted_import
    monkeypatch.setitem(sys.modules, "nuke_hdmatt.evaluation", mod)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(["eval"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # main() restores the caller's handlers


# ---- the cache as a shared folder ----------------------------------------------------------
def test_cache_on_a_full_disk_warns_once_and_stops_writing(tmp_path, monkeypatch, caplog):
    from nuke_hdmatt.shot import cache as cache_mod
    cache = cache_mod.FrameCache(tmp_path / "c")
    alpha = np.full((8, 8), 0.5, np.float32)
    kept = cache.put("a" * 64, alpha)
    real_replace = os.replace

    def full(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache_mod.os, "replace", full)
    with caplog.at_level("WARNING"):
        assert cache.put("b" * 64, alpha) is None
        assert cache.put("c" * 64, alpha) is None  # skipped, no second warning
    monkeypatch.setattr(cache_mod.os, "replace", real_replace)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and str(tmp_path / "c") in warned[0] and "space" in warned[0]
    assert cache.get("a" * 64) is not None and kept.exists()  # reads go on
    assert temp_leftovers(tmp_path) == [] and not any((tmp_path / "c").rglob(".tmp-*"))


def test_cache_entries_are_shared_with_the_group(tmp_path):
    from nuke_hdmatt.shot.cache import FrameCache
    root = tmp_path / "shared"
    root.mkdir()
    groups = [g for g in os.getgroups() if g != os.getegid()] if not ROOT else [1]
    if groups:
        os.chown(root, -1, groups[0])
    os.chmod(root, 0o2775)  # setgid: new files and folders take the folder's group
    old = os.umask(0o002)
    try:
        path = FrameCache(root).put("d" * 64, np.zeros((4, 4), np.float32))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o664
    assert path.stat().st_gid == root.stat().st_gid == path.parent.stat().st_gid


def test_shipped_weights_match_their_sha256_and_a_mismatch_names_the_file(tmp_path):
    from nuke_hdmatt.engine.weights import verified_sha256
    from nuke_hdmatt.errors import WeightsError
    recorded = (Path(str(MODEL) + ".sha256")).read_text().split()[0]
    assert verified_sha256(MODEL) == recorded
    copy = tmp_path / "w.safetensors"
    data = bytearray(MODEL.read_bytes())
    data[-1] ^= 0x80
    copy.write_bytes(bytes(data))
    assert verified_sha256(copy)  # no .sha256 beside it: nothing to check against
    (tmp_path / "w.safetensors.sha256").write_text(f"{recorded}  w.safetensors\n")
    with pytest.raises(WeightsError) as err:
        verified_sha256(copy)
    assert str(copy) in str(err.value) and "sha256" in str(err.value)


def test_trimap_bbox_inside_the_plates_display_window_runs(shot):
    """Issue 14 item 9 / 15 item 4: a trimap EXR whose data window is smaller than the
    plate's, in the same display window, is filled with background outside its bbox."""
    from imaging_fixtures import write_image as write_windowed
    _, trimap = make_frame(0)
    write_windowed(shot / "bbox_trimap.exr", trimap[8:40, 8:40], ("Y",), data_origin=(8, 8),
                   display=(0, 0, 48, 48))
    proc = run_in(shot, "matte", "plate.0001.exr", "bbox_trimap.exr", "-o", "bbox.exr", *FAST,
                  "--no-cache")
    assert proc.returncode == 0, proc.stderr
    _, alpha = read_image(shot / "bbox.exr")
    outside = np.ones((48, 48), bool)
    outside[8:40, 8:40] = False
    assert (alpha[..., 3][outside] == 0).all()
    assert (alpha[..., 3][8:40, 8:40][trimap[8:40, 8:40] == 1.0] == 1).all()


def test_paths_with_spaces_accents_and_uppercase_extensions_just_work(shot):
    folder = "dir with spaces é"
    proc = run_in(shot, "matte", f"{folder}/plate.####.exr", f"{folder}/trimap.####.exr",
                  "-o", f"{folder}/sortie ü/α.####.EXR", *FAST, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    spec, _ = read_image(shot / folder / "sortie ü" / "α.0001.EXR")
    assert "A" in spec.channelnames
    assert temp_leftovers(shot) == []


@pytest.mark.parametrize("argv, prog", [(["eval", "--bogus"], "hdmatt eval"),
                                        (["train", "--steps", "x"], "hdmatt train")])
def test_delegated_commands_usage_errors_are_one_line(shot, argv, prog):
    proc = run_in(shot, *argv)
    assert proc.returncode == 2, proc.stderr
    assert f"see '{prog} --help'" in error_line(proc)


def test_another_users_corrupt_entry_is_a_miss_not_a_crash(tmp_path, monkeypatch):
    """In a shared cache a damaged entry may belong to someone else: it cannot be removed
    (EACCES), so it is a miss and left for its owner; gc and clear skip it too."""
    from nuke_hdmatt.shot.cache import FrameCache
    cache = FrameCache(tmp_path / "c")
    path = cache.put("e" * 64, np.full((8, 8), 0.25, np.float32))
    path.write_bytes(path.read_bytes()[:-5])  # damaged payload

    def not_yours(self, *a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "unlink", not_yours)
    assert cache.get("e" * 64) is None and cache.stats["corrupt"] == 1
    assert cache.gc(0) == (0, 0) and cache.clear() == 0
    assert path.exists()


@pytest.mark.parametrize("variable, value, needle", [
    ("OCIO", "missing.ocio", "missing.ocio"),
    ("HDMATT_WEIGHTS", "gone.safetensors", "gone.safetensors"),
])
def test_bad_environment_is_one_line_exit_2(shot, variable, value, needle):
    before = snapshot(shot)
    proc = run_in(shot, *MATTE, env={**hdmatt_env(shot.parent), variable: value})
    assert proc.returncode == 2, proc.stderr
    assert needle in error_line(proc)
    assert snapshot(shot) == before
