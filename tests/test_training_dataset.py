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
    with pytest.raises(UsageError, match="another configuration"):
        D.build(out, 1, synth.config, seed=2, synthesizer=synth, log=None)
    assert D.main(["build", "--out", str(out), "--n", "1", "--patch", "24", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert D.main(["build", "--out", str(out), "--n", "1", "--crops", "a,b"]) == 2
