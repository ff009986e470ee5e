"""Pre-generated sample folders: build (with the closed-form prior), resume, refuse a
mismatched folder, read back through the torch Dataset."""

import warnings

import numpy as np
import pytest

from nuke_hdmatt.training import dataset as D
from nuke_hdmatt.training.synthesis import SampleSynthesizer, SynthesisConfig


@pytest.fixture
def synth():
    cfg = SynthesisConfig.for_patch(24, scene_size=64, n_context=2, prior=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = SampleSynthesizer(cfg)
    s.dev, s.backgrounds = None, None          # procedural only: fast, no shared data needed
    return s


def test_build_resume_and_read_back(tmp_path, synth):
    out = tmp_path / "samples"
    assert D.build(out, 3, synth.config, seed=4, synthesizer=synth, log=None) == 3
    paths = D.sample_paths(out)
    assert [p.name for p in paths] == ["0000000.npz", "0000001.npz", "0000002.npz"]
    before = paths[1].stat().st_mtime_ns
    assert D.build(out, 3, synth.config, seed=4, synthesizer=synth, log=None) == 0
    assert paths[1].stat().st_mtime_ns == before
    assert not list(out.glob(".*npz"))                         # no temp files left

    # Sample i is a function of (seed, i): regenerating it gives what was stored.
    stored = D.load_sample(paths[2])
    again = D.decode_sample(D.encode_sample(D.generate_sample(synth, 4, 2)))
    for k in ("image", "trimap", "alpha", "prior", "fg", "bg"):
        assert np.array_equal(stored[k], again[k]), k
    assert stored["image"].shape == (3, 3, 24, 24) and stored["prior"].shape == (3, 24, 24)
    assert set(np.unique(stored["trimap"])) <= {0.0, 0.5, 1.0}
    assert np.all(stored["prior"][stored["trimap"] == 1] == 1)

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    ds = D.PatchFolderDataset(out, flip=True, seed=0)
    assert len(ds) == 3 and ds.with_prior
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 3, 24, 24)
    assert item["prior"].shape == (3, 24, 24)
    flips = {bool(torch.equal(ds[i]["alpha"], torch.from_numpy(D.load_sample(paths[i])["alpha"])))
             for i in range(3) for ds.epoch in range(4)}
    assert flips == {True, False}                              # both flipped and not
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["alpha"].shape == (2, 3, 24, 24)


def test_samples_of_one_scene_share_it(tmp_path, synth):
    out = tmp_path / "per_scene"
    assert D.build(out, 4, synth.config, seed=3, per_scene=2, synthesizer=synth, log=None) == 4
    a, b, c = (D.load_sample(out / f"{i:07d}.npz") for i in range(3))
    assert a["names"] == b["names"]                      # same scene
    assert not np.array_equal(a["boxes"], b["boxes"])    # different crops
    regenerated = D.encode_sample(D.generate_sample(synth, 3, 2, per_scene=2))
    assert np.array_equal(D.encode_sample(c)["alpha"], regenerated["alpha"])


def test_build_refuses_another_configuration(tmp_path, synth, capsys):
    out = tmp_path / "s"
    D.build(out, 1, synth.config, seed=1, synthesizer=synth, log=None)
    from nuke_hdmatt.errors import UsageError
    with pytest.raises(UsageError, match="another seed"):
        D.build(out, 1, synth.config, seed=2, synthesizer=synth, log=None)
    # another per-scene count would number the same scenes anew: duplicates
    with pytest.raises(UsageError, match="another per_scene"):
        D.build(out, 2, synth.config, seed=1, per_scene=2, synthesizer=synth, log=None)
    assert D.main(["build", "--out", str(out / "manifest.json"), "--n", "1"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert D.main(["build", "--out", str(out), "--n", "1", "--patch", "24", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert ": error: " in err and len(err.strip().splitlines()) == 1
    assert D.main(["build", "--out", str(out), "--n", "1", "--crops", "a,b"]) == 2


def test_build_takes_source_mix_from_the_command_line(tmp_path, capsys):
    import json
    out = tmp_path / "mix"
    assert D.main(["build", "--out", str(out), "--n", "1", "--patch", "24", "--no-prior",
                   "--procedural", "1", "--highres", "0.9"]) == 0
    config = json.loads((out / D.MANIFEST).read_text())["config"]
    assert config["procedural_probability"] == 1.0 and config["highres_probability"] == 0.9
    assert "building 1 of 1 samples" in capsys.readouterr().err     # progress on stderr
    assert D.main(["build", "--out", str(tmp_path / "bad"), "--n", "1", "--highres", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--highres" in err and len(err.strip().splitlines()) == 1


def test_cascade_priors_pin_the_weights_that_made_them(tmp_path, capsys):
    import json

    from nuke_hdmatt.engine.weights import default_weights_path, file_sha256
    weights = default_weights_path()
    if weights is None:
        pytest.skip("no bundled weights (nuke_hdmatt/model/hdmatt.safetensors)")
    assert D.main(["build", "--out", str(tmp_path / "a"), "--n", "1", "--prior-cascade", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--prior-downscale" in err and len(err.strip().splitlines()) == 1
    assert D.main(["build", "--out", str(tmp_path / "b"), "--n", "1", "--prior-downscale", "1",
                   "--prior-cascade", "1", "--cascade-weights", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    out = tmp_path / "c"
    args = ["build", "--out", str(out), "--n", "1", "--patch", "24", "--procedural", "1",
            "--prior-downscale", "1", "--prior-cascade", "1"]
    from nuke_hdmatt.engine.weights import load_network
    args += ["--prior-solver", load_network(weights)[0].cfg.prior_solver]
    assert D.main(args) == 0
    config = json.loads((out / D.MANIFEST).read_text())["config"]
    assert config["prior_cascade_sha256"] == file_sha256(weights)
    assert D.load_sample(out / "0000000.npz")["prior"].shape[0] == 5


def test_folder_made_before_a_setting_existed_still_resumes(tmp_path, synth):
    import json

    out = tmp_path / "old"
    D.build(out, 1, synth.config, seed=1, synthesizer=synth, log=None)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["config"]["prior_downscale_probability"]      # as written by older code
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert D.build(out, 2, synth.config, seed=1, synthesizer=synth, log=None) == 1


def test_a_folder_made_before_the_context_rule_resumes_only_with_random_windows(tmp_path, synth):
    import json
    from dataclasses import replace

    from nuke_hdmatt.errors import UsageError

    out = tmp_path / "old"
    legacy = replace(synth.config, context_rule="random")
    D.build(out, 1, legacy, seed=1, synthesizer=synth, log=None)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["config"]["context_rule"]                      # as written by older code
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="another context_rule"):
        D.build(out, 2, synth.config, seed=1, synthesizer=synth, log=None)
    assert D.build(out, 2, legacy, seed=1, synthesizer=synth, log=None) == 1


def _fake_dev(root, names=("GT01", "GT02", "GT03")):
    from nuke_hdmatt.atomic import write_png_atomic

    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 32, dtype=np.float32)
    for n in names:
        alpha = np.tile(np.clip((x - 0.3) / 0.3, 0, 1), (24, 1))
        write_png_atomic(root / "alpha" / f"{n}.png", alpha)
        write_png_atomic(root / "image" / f"{n}.png", rng.random((24, 32, 3)))
    big = np.kron(alpha, np.ones((3, 3), np.float32))           # 72 x 96 "alpha_highres"
    write_png_atomic(root / "alpha_highres" / "GT01.png", big)


def test_dev_foregrounds_are_cached_and_hold_out_validation(tmp_path):
    from nuke_hdmatt.training.sources import DevForegrounds

    dev_dir, cache = tmp_path / "dev", tmp_path / "cache"
    _fake_dev(dev_dir)
    dev = DevForegrounds(dev_dir, cache, holdout=("GT02",))
    assert dev.names == ["GT01", "GT03"]
    src = dev.source("GT01")
    assert src.fg.shape == (24, 32, 3) and src.fg.dtype == np.uint8
    assert len(src.unknown_yx) and np.all(np.asarray(src.alpha)[tuple(src.unknown_yx.T)] % 255 != 0)
    cached = sorted(p.name for p in cache.iterdir())
    assert cached == ["GT01_alpha_v2.npy", "GT01_fg_v2.npy"]
    # Second instance reads the cache: same colours, no re-estimation needed.
    again = DevForegrounds(dev_dir, cache, holdout=("GT02",)).source("GT01")
    assert np.array_equal(np.asarray(again.fg), np.asarray(src.fg))
    hr = dev.source("GT01", highres=True)
    assert hr.alpha.shape == (72, 96) and hr.fg.shape == (72, 96, 3)
    rng = np.random.default_rng(0)
    drawn = {dev.draw(rng).name for _ in range(30)}
    assert drawn <= {"GT01", "GT01@hr", "GT03"} and "GT01@hr" in drawn


def test_background_bank_crops_cached_copies(tmp_path):
    from nuke_hdmatt.atomic import write_png_atomic
    from nuke_hdmatt.training.sources import BackgroundBank

    write_png_atomic(tmp_path / "bg" / "a.png", np.random.default_rng(1).random((60, 90, 3)))
    bank = BackgroundBank(tmp_path / "bg", tmp_path / "cache", long_sides=(45,))
    crop = bank.draw(np.random.default_rng(0), 20)
    assert crop.shape == (20, 20, 3) and crop.dtype == np.float32
    assert bank.image(0, 45).shape == (30, 45, 3)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["bg_a_45_v2.npy"]


def test_contact_sheet_of_a_built_folder(tmp_path, synth):
    from nuke_hdmatt.training import contact_sheet
    from nuke_hdmatt.training.sources import read_image

    D.build(tmp_path / "s", 2, synth.config, seed=0, synthesizer=synth, log=None)
    out = tmp_path / "sheet.png"
    assert contact_sheet.main(["--out", str(out), "--from", str(tmp_path / "s"), "--n", "2"]) == 0
    sheet = read_image(out)
    # Rows of 24 px with a 4 px gap; 7 tiles a row (query, trimap, alpha, prior,
    # fg over grey, 2 context patches) with 4 px gaps.
    assert sheet.shape == (2 * 24 + 4, 7 * 24 + 6 * 4, 3)
    assert contact_sheet.main(["--out", str(out), "--from", str(tmp_path / "none")]) == 2


def test_new_build_options_refuse_bad_values_in_one_line(tmp_path, capsys):
    import torch

    from nuke_hdmatt.training import dataset as D
    base = ["build", "--out", str(tmp_path / "s"), "--n", "1", "--patch", "24"]
    bad = [["--see-through", "1.5"], ["--colour-overlap", "-0.1"]]
    if not torch.cuda.is_available():
        bad.append(["--device", "cuda"])
    for extra in bad:
        assert D.main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0], (extra, err)
        assert extra[0].lstrip("-") in err[0] or "cuda" in err[0].lower()
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").glob("*.npz"))


def test_build_refuses_options_that_would_make_nonsense_samples(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o")
    for extra, needle in ((["--context", "-1"], "--context"), (["--crops", "8,24"], "--crops"),
                          (["--scene", "10"], "--scene"), (["--prior-downscale", "2"],
                                                           "--prior-downscale")):
        assert D.main(["build", "--out", out, "--n", "1", "--patch", "24", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    # no shared data: real foregrounds are wanted, so the folder would depend on the machine
    monkeypatch.setenv("HDMATT_SHARED_DATA", str(tmp_path / "nowhere"))
    assert D.main(["build", "--out", out, "--n", "1", "--patch", "24", "--no-prior"]) == 2
    assert "--procedural 1" in capsys.readouterr().err


def test_a_killed_builders_temp_samples_go_and_a_running_ones_stay(tmp_path, synth):
    import os
    out = tmp_path / "s"
    out.mkdir()
    stale, live = out / ".0000007.abc123.npz", out / ".0000008.def456.npz"
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    os.utime(stale, (1000, 1000))
    D.build(out, 1, synth.config, seed=1, synthesizer=synth, log=None)
    assert not stale.exists() and live.exists()


def test_sigterm_stops_a_build_keeping_finished_samples_and_no_temp_file(tmp_path):
    """A farm's or pkill's stop: exit 143 with one line, the finished samples kept (a rerun
    resumes from them), no half-written sample left."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nuke_hdmatt.training.dataset", "build", "--out", str(out),
         "--n", "100000", "--patch", "24", "--scene", "64", "--context", "2", "--no-prior",
         "--procedural", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(D.sample_paths(out) if out.is_dir() else []) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "dataset build: terminated; finished samples are kept, rerun to resume" in err
    assert "Traceback" not in err
    kept = D.sample_paths(out)
    assert len(kept) >= 2 and not list(out.glob(".*npz"))
    for path in kept:
        assert D.load_sample(path)["image"].shape[-1] == 24   # every kept sample whole
