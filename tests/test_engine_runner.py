"""Tiled inference: skipped patches, exact known pixels, batching, streaming, cancel."""

import warnings

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine.config import LIGHT
from nuke_hdmatt.engine.network import HDMattNet
from nuke_hdmatt.engine.runner import Engine
from nuke_hdmatt.errors import Cancelled, TrimapError

torch.set_num_threads(1)
TINY = LIGHT.replace(blocks=(1, 1, 1, 1), width=8, stem_width=8, aspp_width=16, aspp_rates=(2,),
                     key_dim=8, value_dim=8, decoder_width=8)


def make_engine(variant="C", **kw):
    torch.manual_seed(0)
    net = HDMattNet(TINY.replace(variant=variant))
    # an untrained network's default BN statistics squash its features to ~0; calibrate them
    # on random patches so context and prior actually move the output
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        x = torch.rand(4, net.cfg.in_channels, 32, 32) * 2 - 1
        tri = torch.tensor([0.0, 0.5, 1.0]).repeat_interleave(11)[:32, None].expand(4, 1, 32, 32)
        x[:, 3:4] = tri * 2 - 1
        prior = (x[:, 4:5] + 1) / 2 if net.cfg.uses_prior else None
        net(x, tri, prior, torch.stack([x.flip(0)] * 3, 1), torch.stack([tri] * 3, 1))
    kw.setdefault("patch", 32)
    kw.setdefault("overlap", 8)
    kw.setdefault("precision", "fp32")     # auto is bf16 on CPUs with it; these compare numbers
    return Engine(net, torch.device("cpu"), **kw)


def scene(h=100, w=150, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3), dtype=np.float32)
    trimap = np.zeros((h, w), np.float32)
    trimap[20:60, 30:110] = 0.5
    trimap[30:50, 50:90] = 1.0
    return image, trimap


class EncodeSpy:
    """Records the batches the encoder's 1/8 stages run on (``sizes``, ``patches``) and
    those whose kept deep features spared them (``reused``)."""

    def __init__(self, eng):
        self.sizes = []
        self.patches = []
        self.reused = []
        orig = eng.net.encode

        def encode(x, deep=None):
            if deep is None:
                self.sizes.append(x.shape[0])
                self.patches.append(x.clone())
            else:
                self.reused.append(x.shape[0])
            return orig(x, deep)
        eng.net.encode = encode


def test_known_pixels_are_copied_exactly_and_alpha_is_in_range():
    eng = make_engine()
    image, trimap = scene()
    alpha = eng.matte(image, trimap)
    known = trimap != 0.5
    assert alpha.dtype == np.float32 and alpha.shape == trimap.shape
    np.testing.assert_array_equal(alpha[known], trimap[known])
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert np.ptp(alpha[~known]) > 0  # the network, not a constant, filled the unknown band


def test_only_unknown_patches_and_the_clean_patches_offering_what_a_neighbour_lacks_are_encoded():
    eng = make_engine(flip=False)       # one pass (the mirrored frame's would count twice)
    image, trimap = scene()
    # clean foreground on the right, its rim speckled with background: the queries beside it
    # share only the rim, so they hold no whole foreground feature cell, and it offers one
    trimap[:, 120:] = 1.0
    trimap[:, 120:128:2] = 0.0
    spy = EncodeSpy(eng)
    eng.matte(image, trimap)
    # grid of 32px patches with stride 24 over 100x150: rows 0..3, cols 0..5; the unknown band
    # (rows 20-59, cols 30-109) touches patch rows 0-2 and cols 0-4
    from nuke_hdmatt.engine.regions import FOREGROUND, clean_regions
    from nuke_hdmatt.engine.tiling import PatchGrid
    grid = PatchGrid(100, 150, 32, 8)
    unknown = {(r, c) for r in range(grid.rows) for c in range(grid.cols)
               if (grid.extract(trimap, r, c) == 0.5).any()}
    beside = {(r + dr, c + dc) for r, c in unknown for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))}
    beside = {(r, c) for r, c in beside - unknown if 0 <= r < grid.rows and 0 <= c < grid.cols}
    # the clean background patches below the band offer nothing its queries lack; the
    # foreground patches on the right offer whole foreground cells
    border = {cell for cell in beside if cell[1] == 5}
    assert border == {(0, 5), (1, 5), (2, 5)} and beside - border == {(3, c) for c in range(5)}
    assert all(clean_regions(grid.extract(trimap, r, 5)) - clean_regions(grid.extract(trimap, r, 4))
               == {FOREGROUND} for r, _ in border)
    # a small frame: pass 1 encodes each query and each kept border patch once, pass 2 reuses it
    assert sum(spy.sizes) == len(unknown) + len(border)
    clean = [x for x in torch.cat(spy.patches) if not (((x[3] + 1) / 2 - 0.5).abs() < 1e-6).any()]
    assert len(clean) == len(border)
    got = {tuple(np.round(((x[3] + 1) / 2).numpy(), 3).ravel()) for x in clean}
    want = {tuple(np.round(grid.extract(trimap, r, c), 3).ravel()) for r, c in border}
    assert got == want


def test_a_trimap_without_unknown_pixels_is_returned_as_the_alpha():
    eng = make_engine()
    image, trimap = scene()
    trimap[trimap == 0.5] = 0.0
    spy = EncodeSpy(eng)
    np.testing.assert_array_equal(eng.matte(image, trimap), trimap)
    assert spy.sizes == []


@pytest.mark.parametrize("variant", ["A", "C", "D"])
def test_batched_and_one_by_one_agree(variant):
    image, trimap = scene()
    a = make_engine(variant, batch=1).matte(image, trimap)
    b = make_engine(variant, batch=5).matte(image, trimap)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_deterministic_on_cpu():
    image, trimap = scene()
    eng = make_engine()
    np.testing.assert_array_equal(eng.matte(image, trimap), eng.matte(image, trimap))


def test_progress_reports_every_patch_and_cancel_stops():
    eng = make_engine(batch=2)
    image, trimap = scene()
    seen = []
    eng.matte(image, trimap, progress=lambda d, n, s: seen.append((d, n, s)))
    assert seen[-1][0] == seen[-1][1] and all(s == "patches" for *_, s in seen)
    assert [d for d, *_ in seen] == sorted(d for d, *_ in seen)
    calls = []
    with pytest.raises(Cancelled):
        eng.matte(image, trimap, cancel=lambda: calls.append(1) or len(calls) > 2)


def test_variant_d_uses_the_given_prior():
    eng = make_engine("D")
    image, trimap = scene()
    prior = np.where(trimap == 0.5, 0.25, trimap).astype(np.float32)
    alpha = eng.matte(image, trimap, prior=prior)
    # untrained D returns its prior (zero-initialised residual)
    np.testing.assert_allclose(alpha, prior, atol=1e-4)


def test_input_errors_are_clear():
    eng = make_engine()
    image, trimap = scene()
    with pytest.raises(TrimapError, match="150x100"):
        eng.matte(image, trimap[:50])
    bad = trimap.copy()
    bad[0, 0] = 0.3
    with pytest.raises(TrimapError, match="other than"):
        eng.matte(image, bad)
    with pytest.raises(ValueError, match="float in 0-1"):
        eng.matte((image * 255).astype(np.uint8), trimap)
    with_prior = make_engine("D")
    with pytest.raises(ValueError, match="prior is"):
        with_prior.matte(image, trimap, prior=np.full((20, 20), 0.5, np.float32))
    prior = np.where(trimap == 0.5, 0.5, trimap).astype(np.float32)
    prior[trimap == 0.5] = np.where(np.arange((trimap == 0.5).sum()) == 7, np.nan, 0.5)
    assert np.isfinite(with_prior.matte(image, trimap, prior=prior)).all()  # one NaN: all NaN


def test_missing_weights_file_is_an_error_naming_it_and_prints_nothing(tmp_path, capsys):
    from nuke_hdmatt.errors import WeightsError
    gone = tmp_path / "gone.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either: never an untrained fallback
        with pytest.raises(WeightsError, match="not found") as err:
            Engine.load(weights=gone, device="cpu")
    assert str(gone) in str(err.value)
    assert capsys.readouterr() == ("", "")


def test_random_network_only_when_asked_for_explicitly(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eng = Engine.load(random_init=True, device="cpu", config=TINY, patch=32, overlap=8)
    assert eng.weights_id == "untrained-random" and eng.weights_path is None
    assert eng.weights_sha256 == "" and eng.cfg == TINY and eng.device.type == "cpu"
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="random_init"):
        Engine.load(weights="x.safetensors", random_init=True, device="cpu")


def test_context_off_runs_plain_patches_and_changes_the_result():
    image, trimap = scene()
    with_ctx = make_engine().matte(image, trimap)
    plain = make_engine(context=False).matte(image, trimap)
    assert np.isfinite(plain).all() and not np.allclose(with_ctx, plain)


def test_the_stage_hook_times_each_network_stage_and_is_off_by_default():
    image, trimap = scene()
    seen = []
    eng = make_engine(on_stage=lambda stage, seconds: seen.append((stage, seconds)))
    plain = make_engine()
    np.testing.assert_array_equal(eng.matte(image, trimap), plain.matte(image, trimap))
    assert {s for s, _ in seen} == {"encode", "cpc", "decode"}
    assert all(t >= 0 for _, t in seen) and plain.on_stage is None


def test_auto_precision_is_bf16_on_cpus_that_compute_it_natively(monkeypatch):
    from nuke_hdmatt.engine import runner
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runner, "cpu_has_native_bf16", lambda native=native: native)
        eng = make_engine(precision="auto")
        assert eng.params()["precision"] == want
        # the autocast the network runs under: bf16 features, or none
        seen = []
        encode = eng.net.encode

        def spy(x, deep=None, encode=encode, seen=seen):
            feats = encode(x, deep)
            seen.append(feats["deep"].dtype)
            return feats
        eng.net.encode = spy
        eng.matte(*scene())
        assert set(seen) == {torch.bfloat16 if native else torch.float32}


def test_snap_sets_the_bands_near_certain_alpha_to_exactly_0_and_1_and_nothing_else():
    """snap (default 0.01): unknown pixels within snap of 0 or 1 become exactly 0 or 1, the
    rest of the band and the known pixels are untouched; snap 0 is the network's alpha
    as it is; the threshold is in the cache key."""
    plain, snapped = make_engine("D", snap=0.0), make_engine("D", snap=0.2)
    for eng in (plain, snapped):
        torch.manual_seed(1)
        torch.nn.init.normal_(eng.net.decoder.head.weight, std=2.0)
    image, trimap = scene()
    prior = np.where(trimap == 0.5, 0.4, trimap).astype(np.float32)
    raw, got = plain.matte(image, trimap, prior=prior), snapped.matte(image, trimap, prior=prior)
    band = trimap == 0.5
    low, high = band & (raw < 0.2), band & (raw > 0.8)
    middle = band & ~low & ~high
    assert low.sum() > 20 and high.sum() > 20 and middle.sum() > 20     # all three happen
    assert (got[low] == 0).all() and (got[high] == 1).all()
    np.testing.assert_array_equal(got[middle], raw[middle])
    np.testing.assert_array_equal(got[~band], trimap[~band])
    assert not ((raw[band] == 0) | (raw[band] == 1)).any()             # off: never exact
    assert plain.params()["snap"] == 0.0 and snapped.params()["snap"] == 0.2
    assert make_engine("D").settings.snap == 0.01                      # the default


def test_snap_alpha_leaves_known_pixels_and_a_zero_threshold_alone():
    from nuke_hdmatt.engine.snap import snap_alpha
    alpha = np.array([[0.005, 0.5, 0.996], [0.004, 0.02, 0.999]], np.float32)
    unknown = np.array([[True, True, True], [False, True, False]])
    np.testing.assert_array_equal(snap_alpha(alpha.copy(), unknown, 0.0), alpha)
    np.testing.assert_array_equal(snap_alpha(alpha.copy(), unknown, 0.01),
                                  np.float32([[0, 0.5, 1], [0.004, 0.02, 0.999]]))


def test_flip_averages_a_small_frame_with_its_mirror_image_and_leaves_larger_frames_alone():
    """flip (the default): on a frame within prior_max_side the alpha is the mean of the
    network's and of its alpha on the mirrored frame, mirrored back; known pixels stay
    exact; progress counts both passes. Frames the engine cascades run one pass. (Not
    snapped to 0 and 1: the mean of two snapped alphas is not the snapped mean.)"""
    flipped, plain = make_engine("D", snap=0.0), make_engine("D", flip=False, snap=0.0)
    for eng in (flipped, plain):
        torch.manual_seed(1)
        torch.nn.init.normal_(eng.net.decoder.head.weight, std=0.5)
    image, trimap = scene()
    prior = np.where(trimap == 0.5, 0.4, trimap).astype(np.float32)
    one = plain.matte(image, trimap, prior=prior)
    mirrored = plain.matte(image[:, ::-1].copy(), trimap[:, ::-1].copy(), prior=prior[:, ::-1].copy())
    seen = []
    got = flipped.matte(image, trimap, prior=prior, progress=lambda d, n, s: seen.append((d, n)))
    np.testing.assert_allclose(got, (one + mirrored[:, ::-1]) / 2, atol=1e-6)
    assert np.abs(got - one)[trimap == 0.5].max() > 1e-3
    np.testing.assert_array_equal(got[trimap != 0.5], trimap[trimap != 0.5])
    assert flipped.params()["flip"] and not plain.params()["flip"]      # in the cache key
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] > seen[0][1] / 2
    big, big_plain = make_engine("D", prior_max_side=64), make_engine("D", prior_max_side=64, flip=False)
    for eng in (big, big_plain):
        torch.manual_seed(1)
        torch.nn.init.normal_(eng.net.decoder.head.weight, std=0.5)
    np.testing.assert_array_equal(big.matte(image, trimap, prior=prior),
                                  big_plain.matte(image, trimap, prior=prior))
