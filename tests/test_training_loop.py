"""Loss, batch plumbing, and a resumable few-step training run on a tiny network."""

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine.config import LIGHT
from nuke_hdmatt.engine.network import HDMattNet
from nuke_hdmatt.engine.weights import load_network, save_weights
from nuke_hdmatt.training.cli import rotate_queries, split_batch
from nuke_hdmatt.training.loss import matting_loss, patch_weights, srgb_to_linear
from nuke_hdmatt.training.trainer import TrainSettings, train

torch.set_num_threads(1)
TINY = LIGHT.replace(blocks=(1, 1, 1, 1), width=8, stem_width=8, aspp_width=16, aspp_rates=(2,),
                     key_dim=8, value_dim=8, decoder_width=8, variant="D")


def _batch(b=2, p=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.rand(b, p + 1, s, s, generator=g)
    tri = torch.full((b, p + 1, s, s), 0.5)
    tri[..., :6, :] = 1.0
    tri[..., -6:, :] = 0.0
    alpha[..., :6, :] = 1.0
    alpha[..., -6:, :] = 0.0
    fg, bg = torch.rand(b, p + 1, 3, s, s, generator=g), torch.rand(b, p + 1, 3, s, s, generator=g)
    lin = alpha[:, :, None] * srgb_to_linear(fg) + (1 - alpha[:, :, None]) * srgb_to_linear(bg)
    image = torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp_min(1e-9) ** (1 / 2.4) - 0.055)
    return {"image": image, "fg": fg, "bg": bg, "trimap": tri, "alpha": alpha,
            "prior": (alpha + 0.2 * torch.rand(alpha.shape, generator=g)).clamp(0, 1)}


def test_loss_is_smallest_for_the_ground_truth_and_ignores_known_pixels():
    d = split_batch(_batch())
    w = patch_weights(32, 8)
    args = (d["alpha"], d["image"], d["fg"], d["bg"], d["trimap"], w)
    perfect = matting_loss(d["alpha"], *args)
    assert perfect.item() < 1e-3                        # linear-light composition is exact
    worse = matting_loss((d["alpha"] + 0.1).clamp(0, 1), *args)
    assert worse.item() > perfect.item() + 0.02
    known_wrong = d["alpha"].clone()
    known_wrong[..., :6, :] = 0.0                       # errors on known pixels do not count
    torch.testing.assert_close(matting_loss(known_wrong, *args), perfect)


def test_patch_weights_fade_towards_the_patch_border():
    w = patch_weights(32, 8)
    assert w[16, 16] == 1.0 and w[0, 16] < 0.1 and w[0, 0] < w[0, 16]


def test_split_and_rotate_keep_query_and_context_from_the_same_sample():
    batch = _batch(b=4, p=3)
    batch["trimap"][1, 0] = 0.0                         # query of sample 1 has no unknown pixel
    rotated = rotate_queries(batch, torch.Generator().manual_seed(0), p_rotate=1.0)
    for b in range(4):   # a permutation of the same patches, query first
        orig = {float(batch["alpha"][b, j].sum()) for j in range(4)}
        assert {float(rotated["alpha"][b, j].sum()) for j in range(4)} == orig
    assert not torch.equal(rotated["alpha"][:, 0], batch["alpha"][:, 0])
    d = split_batch(rotated)
    assert d["image"].shape == (4, 3, 32, 32) and d["ctx_image"].shape == (4, 3, 3, 32, 32)
    assert d["trimap"].shape == (4, 1, 32, 32) and d["ctx_prior"].shape == (4, 3, 1, 32, 32)


def test_training_runs_checkpoints_and_resumes(tmp_path):
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    batches = [split_batch(_batch(seed=i)) for i in range(3)]
    factory = lambda step: iter(batches)
    s = TrainSettings(run=tmp_path / "run", data=tmp_path, variant="D", init=init, steps=4, threads=1)
    state = train(s, factory, val_pairs=None)
    assert state["step"] == 4 and (tmp_path / "run" / "ckpt.pt").exists()
    s.steps = 6
    state = train(s, factory, val_pairs=None)             # resumes at 4, not 0
    assert state["step"] == 6
    ck = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)
    assert ck["state"]["step"] == 6
    net, _ = load_network(init)
    moved = any(not torch.equal(a, b.float()) for a, b in zip(ck["net"].values(), net.state_dict().values())
                if a.is_floating_point())
    assert moved


def test_freeze_bn_holds_the_init_statistics_while_the_weights_learn(tmp_path):
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    start, _ = load_network(init)
    batches = [split_batch(_batch(seed=i)) for i in range(3)]
    ends = {}
    for freeze in (False, True):
        s = TrainSettings(run=tmp_path / f"run{freeze}", data=tmp_path, variant="D", init=init,
                          steps=3, threads=1, freeze_bn=freeze)
        train(s, lambda step: iter(batches), val_pairs=None)
        ends[freeze] = torch.load(tmp_path / f"run{freeze}" / "ckpt.pt", weights_only=False)["net"]
    stats = [k for k in start.state_dict() if k.endswith(("running_mean", "running_var"))]
    conv = "encoder.stem.0.weight"
    assert stats and conv in ends[True]
    # without it, every step re-estimates the statistics from the batch
    assert any(not torch.equal(ends[False][k], start.state_dict()[k].float()) for k in stats)
    for k in stats:
        torch.testing.assert_close(ends[True][k], start.state_dict()[k].float())
    assert not torch.equal(ends[True][conv], start.state_dict()[conv].float())


def test_validation_writes_best_weights_that_the_engine_loads(tmp_path, monkeypatch):
    from nuke_hdmatt.engine.runner import Engine
    from nuke_hdmatt.training.validation import ValPair
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    rng = np.random.default_rng(0)
    tri = np.zeros((40, 40), np.float32)
    tri[10:30] = 0.5
    tri[15:25, 10:30] = 1.0
    gt = np.where(tri == 0.5, 0.5, tri).astype(np.float32)
    pair = ValPair("X", "trimap1", rng.random((40, 40, 3), dtype=np.float32), tri, gt,
                   np.where(tri == 0.5, 0.4, tri).astype(np.float32))
    pairs = [pair, ValPair("X", "trimap2", pair.image, tri, gt, pair.prior)]
    batches = [split_batch(_batch(seed=i)) for i in range(2)]
    s = TrainSettings(run=tmp_path / "run", data=tmp_path, variant="D", init=init, steps=2,
                      threads=1, prior_solver="cf+knn")
    from nuke_hdmatt.training import trainer, validation
    seen = []

    def spy(eng, val_pairs):
        seen.append(eng.settings)
        return validation.evaluate_engine(eng, val_pairs)
    monkeypatch.setattr(trainer, "evaluate_engine", spy)
    train(s, lambda step: iter(batches), val_pairs=pairs)
    # one float32 pass, not snapped: comparable with every earlier run's history
    assert seen and all(v.snap == 0.0 and not v.flip and v.precision == "fp32" for v in seen)
    best = tmp_path / "run" / "best.safetensors"
    assert best.exists() and (tmp_path / "run" / "best.json").exists()
    eng = Engine.load(weights=best, device="cpu", patch=32, overlap=8)
    assert eng.cfg.variant == "D" and eng.matte(pair.image, tri, prior=pair.prior).shape == (40, 40)
    # fine-tuned on another solver's priors, the weights say so: the engine solves that one
    assert eng.cfg.prior_solver == "cf+knn"


def test_training_refuses_samples_of_another_prior_solver(tmp_path, capsys):
    import json

    from nuke_hdmatt.errors import UsageError
    from nuke_hdmatt.training import dataset as D
    from nuke_hdmatt.training.cli import main, samples_prior_solver

    folders = []
    for solver in ("cf", "cf+knn"):
        out = tmp_path / solver
        assert D.main(["build", "--out", str(out), "--n", "1", "--patch", "24", "--scene", "48",
                       "--procedural", "1", "--prior-solver", solver]) == 0
        assert json.loads((out / D.MANIFEST).read_text())["config"]["prior_solver"] == solver
        folders.append(out)
    assert samples_prior_solver(folders[1:], None) == "cf+knn"
    with pytest.raises(UsageError, match="different solvers"):
        samples_prior_solver(folders, None)
    code = main(["--data", str(folders[1]), "--run", str(tmp_path / "run"), "--val-images", "",
                 "--prior-solver", "cf", "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "samples were built with cf+knn" in err[-1]
    assert D.main(["build", "--out", str(tmp_path / "bad"), "--n", "1", "--prior-solver", "lkm"]) == 2
    assert "--prior-solver" in capsys.readouterr().err
    code = main(["--data", str(folders[1]), "--run", str(tmp_path / "run2"), "--val-images", "",
                 "--prior-solver", "cf+magic", "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--prior-solver" in err[0] and "distinct names" in err[0]


def test_train_command_reports_a_missing_sample_folder_in_one_line(tmp_path, capsys):
    from nuke_hdmatt.training.cli import main
    code = main(["--data", str(tmp_path / "nope"), "--run", str(tmp_path / "run"), "--val-images", ""])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope" in err[0] and "sample folder" in err[0]


def test_freeze_bn_without_init_weights_is_refused_in_one_line(tmp_path, capsys):
    from nuke_hdmatt.training.cli import main
    (tmp_path / "data").mkdir()
    code = main(["--data", str(tmp_path / "data"), "--run", str(tmp_path / "run"),
                 "--val-images", "", "--freeze-bn"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--freeze-bn" in err[0] and "--init" in err[0]
    assert not (tmp_path / "run").exists()


def test_prior_solver_comes_from_manifests_or_the_init_weights_before_any_sample(tmp_path):
    import json

    from nuke_hdmatt.training.cli import samples_prior_solver
    from nuke_hdmatt.training.dataset import MANIFEST

    built = tmp_path / "building"
    built.mkdir()
    (built / MANIFEST).write_text(json.dumps({"config": {"prior_solver": "cf+sm"}}))
    empty = tmp_path / "empty"
    empty.mkdir()
    # a run started while its builders have written only their manifest keeps their solver
    assert samples_prior_solver([built, empty], None) == "cf+sm"
    init = tmp_path / "init.safetensors"
    save_weights(HDMattNet(TINY.replace(prior_solver="cf+sm")), init)
    # no manifest at all: the solver the init weights were trained with, not closed-form
    assert samples_prior_solver([empty], None, init) == "cf+sm"
    assert samples_prior_solver([empty], None) == "cf"


def test_a_stopped_run_saves_what_it_has_and_says_it_stopped(tmp_path):
    """Ctrl-C or SIGTERM: the checkpoint and last.safetensors are written and the stop is
    re-raised (a script's `train && ship` must not go on as if it finished)."""
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    batches = [split_batch(_batch(seed=i)) for i in range(2)]

    def stopped(step):
        yield from batches
        raise KeyboardInterrupt
    s = TrainSettings(run=tmp_path / "run", data=tmp_path, variant="D", init=init, steps=10,
                      threads=1)
    with pytest.raises(KeyboardInterrupt):
        train(s, stopped, val_pairs=None)
    assert torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["state"]["step"] == 2
    net, _ = load_network(tmp_path / "run" / "last.safetensors")   # the engine can load it
    assert net.cfg.width == TINY.width


def test_minutes_count_over_every_session_of_a_run(tmp_path, monkeypatch):
    """A resumed --minutes run goes on from where its time stopped: the same command run
    again neither restarts the schedule nor trains the whole budget again."""
    import nuke_hdmatt.training.trainer as T
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    clock = [1000.0]
    monkeypatch.setattr(T.time, "time", lambda: clock[0])
    batches = [split_batch(_batch(seed=i)) for i in range(3)]

    def ticking(step):
        for b in batches:
            clock[0] += 20.0           # each step takes 20 s
            yield b
    s = TrainSettings(run=tmp_path / "run", data=tmp_path, variant="D", init=init, steps=1000,
                      minutes=1.0, threads=1)
    first = train(s, ticking, val_pairs=None)["step"]
    assert first == 4                   # 80 s: the first step past its minute
    assert train(s, ticking, val_pairs=None)["step"] == first + 1   # one step, then stops
    assert (tmp_path / "run" / "last.safetensors").exists()


def test_train_refuses_what_would_fail_or_mislead_later(tmp_path, capsys):
    import json

    from nuke_hdmatt.training import dataset as D
    from nuke_hdmatt.training.cli import main

    def run(*args):
        code = main(["--run", str(tmp_path / "run"), "--val-images", "", "--steps", "1", *args])
        err = capsys.readouterr().err.strip().splitlines()
        return code, err[-1] if err else ""

    parent = tmp_path / "runs"                          # a parent of sample folders
    (parent / "data192").mkdir(parents=True)
    code, err = run("--data", str(parent))
    assert code == 2 and "not a sample folder" in err
    folders = {}
    for name, extra in (("p24", ["--patch", "24"]), ("p32", ["--patch", "32"]),
                        ("noprior", ["--patch", "24", "--no-prior"])):
        out = tmp_path / name
        assert D.main(["build", "--out", str(out), "--n", "1", "--scene", "64",
                       "--procedural", "1", *extra]) == 0
        folders[name] = str(out)
    code, err = run("--data", f"{folders['p24']},{folders['p32']}")
    assert code == 2 and "different patch sizes" in err
    code, err = run("--data", folders["noprior"])
    assert code == 2 and "--no-prior" in err
    manifest = json.loads((tmp_path / "p24" / D.MANIFEST).read_text())
    manifest["config"]["holdout"] = ["GT10"]           # built with GT02 among its foregrounds
    (tmp_path / "p24" / D.MANIFEST).write_text(json.dumps(manifest))
    code, err = run("--data", folders["p24"], "--val-images", "GT02,GT10")
    assert code == 2 and "validation image(s) GT02" in err
    for bad, needle in ((["--threads", "0"], "--threads"), (["--lr", "-1"], "--lr"),
                        (["--preset", "paper", "--init", "x.safetensors"], "--preset")):
        code, err = run("--data", folders["p32"], *bad)
        assert code == 2 and needle in err, (bad, err)
    (tmp_path / "afile").write_text("x")
    code = main(["--run", str(tmp_path / "afile"), "--data", folders["p32"], "--val-images", ""])
    assert code == 2 and "is a file" in capsys.readouterr().err


def test_resuming_a_run_of_another_configuration_is_one_line(tmp_path):
    from nuke_hdmatt.errors import UsageError
    init = tmp_path / "init.safetensors"
    torch.manual_seed(0)
    save_weights(HDMattNet(TINY), init)
    batches = [split_batch(_batch(seed=0))]
    s = TrainSettings(run=tmp_path / "run", data=tmp_path, variant="D", init=init, steps=1,
                      threads=1)
    train(s, lambda step: iter(batches), val_pairs=None)
    save_weights(HDMattNet(TINY.replace(width=16)), init)     # another network, same run
    with pytest.raises(UsageError, match="cannot resume from this checkpoint"):
        train(s, lambda step: iter(batches), val_pairs=None)
