"""The closed-form prior of variant D: global (downsampled) and local (per patch)."""

import copy

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine.prior import compute_prior, global_prior, local_prior


def disc_scene(h=160, w=200):
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((50 - r) / 8, 0, 1).astype(np.float32)
    fg, bg = np.array([0.9, 0.3, 0.1], np.float32), np.array([0.1, 0.4, 0.8], np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    trimap = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5)).astype(np.float32)
    from scipy import ndimage
    band = ndimage.binary_dilation(trimap == 0.5, iterations=3)
    trimap[band] = 0.5
    return image.astype(np.float32), trimap, alpha


def test_global_prior_recovers_a_smooth_edge_and_keeps_known_pixels():
    image, trimap, alpha = disc_scene()
    prior = global_prior(image, trimap)
    u = trimap == 0.5
    assert np.abs(prior[u] - alpha[u]).mean() < 0.03
    np.testing.assert_array_equal(prior[~u], trimap[~u])


def test_downsampled_and_local_priors_stay_close_to_the_full_solve():
    image, trimap, alpha = disc_scene()
    u = trimap == 0.5
    small = global_prior(image, trimap, max_side=100)     # solved at half size, upsampled
    local = local_prior(image, trimap, patch=64, overlap=16, max_side=100)
    for p in (small, local):
        assert p.shape == trimap.shape and p.dtype == np.float32
        assert np.abs(p[u] - alpha[u]).mean() < 0.06
        np.testing.assert_array_equal(p[~u], trimap[~u])


@pytest.mark.parametrize("side", ["no foreground", "no background"])
def test_a_trimap_of_one_known_region_is_a_colour_prior_not_one_half(side):
    """No classical solve exists: an unknown pixel of a known colour is that side's, one far
    from all of them the other side's (it was 0.5 everywhere, and the network made a disc of
    the foreground's colour nearly transparent)."""
    image, trimap, alpha = disc_scene()
    known = 1.0 if side == "no foreground" else 0.0
    trimap[trimap == known] = 0.5
    u = trimap == 0.5
    prior = compute_prior(image, trimap, "global")
    np.testing.assert_array_equal(prior[~u], trimap[~u])
    assert np.abs(prior[u] - alpha[u]).mean() < 0.15            # 0.5 everywhere: over 0.3
    assert np.abs(np.where(u, 0.5, trimap)[u] - alpha[u]).mean() > 0.3


def test_a_solver_that_fails_on_a_strip_leaves_the_others():
    """Closed-form needs 3 px a side: on a 2-px strip cf + sm is shared matting's alpha (the
    whole prior was 0.5 before)."""
    from nuke_hdmatt.engine.prior import solve
    gt = np.zeros((2, 60), np.float32)
    gt[:, 30:] = 1.0
    gt[:, 29] = 0.5
    image = (gt[..., None] * np.array([0.9, 0.2, 0.1]) + (1 - gt[..., None])
             * np.array([0.1, 0.3, 0.8])).astype(np.float32)
    trimap = gt.copy()
    trimap[:, 26:34] = 0.5
    both = solve(image, trimap, "cf+sm")
    np.testing.assert_array_equal(both, solve(image, trimap, "sm"))
    assert np.abs(both - gt).max() < 0.1


def test_a_trimap_without_any_known_pixel_gives_one_half():
    image, trimap, _ = disc_scene()
    prior = compute_prior(image, np.full_like(trimap, 0.5), "global")
    assert np.all(prior == 0.5)


def test_the_engine_keeps_a_foreground_coloured_region_opaque_without_background():
    from nuke_hdmatt.engine import Engine
    rng = np.random.default_rng(0)
    image = np.clip(np.array([0.8, 0.5, 0.3], np.float32)
                    + 0.05 * rng.standard_normal((96, 96, 3)).astype(np.float32), 0, 1)
    trimap = np.ones((96, 96), np.float32)
    trimap[:, -12:] = 0.5
    trimap[40:50, 40:50] = 0.5
    alpha = Engine.load(device="cpu", precision="fp32").matte(image, trimap)
    assert alpha[trimap == 0.5].mean() > 0.6          # 0.03 on the 0.5 prior


def test_resized_trimap_keeps_known_only_where_a_cell_was_entirely_known():
    from nuke_hdmatt.engine.prior import downsample
    # 2x2 cells: all background, background with one unknown, all foreground, mostly
    # foreground with one pixel a hair below 1 (resampling rounding)
    trimap = np.array([[0, 0, 0, 0.5, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 0.9999999]],
                      np.float32)
    _, small = downsample(np.zeros((2, 8, 3), np.float32), trimap, 4)
    np.testing.assert_array_equal(small, [[0.0, 0.5, 1.0, 1.0]])
    # a file's anti-aliased 0.15 / 0.85 are known; a resampled cell's mix is not
    from nuke_hdmatt.trimap_snap import FILE_TOLERANCE, RESAMPLED_TOLERANCE, snap
    np.testing.assert_array_equal(snap([0.15, 0.85], FILE_TOLERANCE), [0.0, 1.0])
    np.testing.assert_array_equal(snap([0.15, 0.85], RESAMPLED_TOLERANCE), [0.5, 0.5])


def _cascade_engines(**kw):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_engine_runner import make_engine
    # the tests rebuild the cascade from its parts, which must not be snapped to 0 and 1
    # (the engine snaps its answer once, at the end)
    kw.setdefault("snap", 0.0)
    return (make_engine("D", prior="cascade", prior_max_side=64, **kw),
            make_engine("D", prior="global", prior_max_side=64, **kw))


def _edge_scene(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.clip((xx - w / 2) / 12 + 0.5 + 0.1 * np.sin(yy / 5), 0, 1)
    rng = np.random.default_rng(3)
    image = (alpha[..., None] * [0.9, 0.3, 0.2] + (1 - alpha[..., None]) * [0.1, 0.4, 0.8]
             + 0.02 * rng.random((h, w, 3))).astype(np.float32)
    trimap = np.where(alpha <= 0, 0.0, np.where(alpha >= 1, 1.0, 0.5)).astype(np.float32)
    trimap[:, int(w / 2) - 20:int(w / 2) + 20] = 0.5
    return image, trimap


def test_cascade_is_a_damped_full_resolution_pass_on_the_guided_coarse_alpha():
    from nuke_hdmatt.engine.guided import guided_upsample
    from nuke_hdmatt.engine.prior import downsample
    cascade, plain = _cascade_engines(flip=False)   # plain's coarse frame: one pass, as the cascade's
    for eng in (cascade, plain):      # an untrained residual head returns the prior unchanged
        torch.manual_seed(1)
        torch.nn.init.normal_(eng.net.decoder.head.weight, std=0.5)
    image, trimap = _edge_scene(100, 150)
    stages = []
    got = cascade.matte(image, trimap, progress=lambda d, t, s: stages.append(s))
    small = downsample(image, trimap, 64)
    coarse = plain.matte(*small)                       # 64 px long side: solved whole
    prior = guided_upsample(coarse, small[0], image, trimap)
    fine = plain.matte(image, trimap, prior=prior)
    unknown = trimap == 0.5
    want = trimap.copy()
    want[unknown] = prior[unknown] + cascade.detail * (fine[unknown] - prior[unknown])
    assert 0 < cascade.detail < 1
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.array_equal(got[~unknown], trimap[~unknown])
    assert "coarse patches" in stages and stages[-1] == "patches"
    # the cascade differs from the closed-form prior it starts from, and from its undamped pass
    assert not np.array_equal(got, plain.matte(image, trimap))
    assert np.abs(got - fine)[unknown].max() > 1e-3
    # snapping comes last, on the cascade's answer (not on the coarse alpha it starts from)
    from nuke_hdmatt.engine.snap import snap_alpha
    cascade.settings = cascade.settings.replace(snap=0.2)
    np.testing.assert_array_equal(cascade.matte(image, trimap), snap_alpha(got.copy(), unknown, 0.2))
    assert ((got[unknown] < 0.2) | (got[unknown] > 0.8)).any()
    cascade.settings = cascade.settings.replace(detail=1.0, snap=0.0)
    np.testing.assert_array_equal(cascade.matte(image, trimap), fine)
    # detail 0: the guided-upsampled 1024 px alpha itself; the full-resolution pass never runs
    cascade.settings = cascade.settings.replace(detail=0.0)
    stages.clear()
    np.testing.assert_allclose(cascade.matte(image, trimap, progress=lambda d, t, s: stages.append(s)),
                               np.where(unknown, prior, trimap), atol=1e-6)
    assert "patches" not in stages and "coarse patches" in stages


def test_cascade_on_a_frame_within_the_prior_size_is_the_global_prior():
    cascade, plain = _cascade_engines()
    image, trimap = _edge_scene(40, 60)
    np.testing.assert_array_equal(cascade.matte(image, trimap), plain.matte(image, trimap))


def test_cascade_can_be_cancelled_during_its_coarse_pass():
    from nuke_hdmatt.errors import Cancelled
    cascade, _ = _cascade_engines()
    image, trimap = _edge_scene(100, 150)
    seen = []

    def cancel():
        return bool(seen)
    with pytest.raises(Cancelled):
        cascade.matte(image, trimap, progress=lambda d, t, s: seen.append(s), cancel=cancel)
    assert seen and all(s.startswith("coarse") for s in seen)


def test_a_combined_solver_averages_its_solves():
    pymatting = pytest.importorskip("pymatting")

    image, trimap, alpha = disc_scene(80, 100)
    u = trimap == 0.5
    both = compute_prior(image, trimap, "global", solver="cf+knn")
    cf = compute_prior(image, trimap, "global", solver="cf")
    knn = pymatting.estimate_alpha_knn(image.astype(np.float64), trimap.astype(np.float64))
    np.testing.assert_allclose(both[u], (cf + np.clip(knn, 0, 1))[u] / 2, atol=1e-5)
    np.testing.assert_array_equal(both[~u], trimap[~u])
    assert np.abs(both[u] - alpha[u]).mean() < 0.05
    with pytest.raises(ValueError, match="prior solver"):
        compute_prior(image, trimap, "global", solver="cf+magic")


def test_torch_closed_form_and_shared_matting_reproduce_pymatting():
    """The ported solvers give PyMatting's alphas on a textured synthetic scene."""
    pymatting = pytest.importorskip("pymatting")
    image, trimap, _ = disc_scene(90, 110)
    rng = np.random.default_rng(5)
    image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)
    u = trimap == 0.5
    for name, fn in (("cf", pymatting.estimate_alpha_cf), ("sm", pymatting.estimate_alpha_sm)):
        want = np.clip(fn(image.astype(np.float64), trimap.astype(np.float64)), 0, 1)
        got = compute_prior(image, trimap, "global", solver=name)
        assert np.abs(got - want)[u].mean() < 0.01, name
        if name == "sm":    # a port, not an approximation: float32 noise only
            assert np.abs(got - want)[u].max() < 1e-3
    assert not np.array_equal(compute_prior(image, trimap, solver="cf"),
                              compute_prior(image, trimap, solver="sm"))


def test_the_closed_form_operator_is_pymattings_laplacian():
    from pymatting.laplacian.cf_laplacian import cf_laplacian

    from nuke_hdmatt.engine.closed_form import UnknownLaplacian

    rng = np.random.default_rng(0)
    img = rng.random((13, 17, 3))
    lap = cf_laplacian(img)                 # all windows: nothing is known
    op = UnknownLaplacian(torch.from_numpy(img).permute(2, 0, 1).float(),
                          torch.ones(13, 17, dtype=torch.bool))
    p = rng.random(13 * 17)
    np.testing.assert_allclose(op(torch.from_numpy(p).float()).numpy(), lap @ p, atol=1e-5)
    np.testing.assert_allclose(op.diagonal.numpy(), lap.diagonal(), atol=1e-5)
    # a band of unknown pixels touching the frame's edges: L_UU, rows and columns of U
    unknown = np.zeros((13, 17), bool)
    unknown[3:9, :] = True
    unknown[:, 12:15] = True
    u = unknown.flatten()
    op = UnknownLaplacian(torch.from_numpy(img).permute(2, 0, 1).float(), torch.from_numpy(unknown))
    p = rng.random(u.sum())
    want = lap.tocsr()[u][:, u] @ p
    np.testing.assert_allclose(op(torch.from_numpy(p).float()).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(op.diagonal.numpy(), lap.diagonal()[u], atol=1e-5)


def test_the_closed_form_solve_stops_on_cancel_and_returns_its_iterate_when_short_of_iterations():
    from nuke_hdmatt.engine import closed_form
    from nuke_hdmatt.errors import Cancelled

    image, trimap, alpha = disc_scene()
    img = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    tri = torch.from_numpy(trimap)
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 5
    with pytest.raises(Cancelled):
        closed_form.solve(img, tri, cancel=cancel)
    assert len(polls) == 6                                # polled every iteration
    short, rel = closed_form.solve(img, tri, max_iter=3, coarse_to_fine=False)
    full, rel_full = closed_form.solve(img, tri)
    assert rel > 10 * rel_full and rel_full <= closed_form.RTOL   # no raise, a worse iterate
    u = trimap == 0.5
    assert np.abs(full.numpy() - alpha)[u].mean() < np.abs(short.numpy() - alpha)[u].mean()


def test_cancel_during_the_engines_prior_solve_is_prompt():
    """Ctrl-C during the classical prior stops it at its next iteration."""
    import time

    from nuke_hdmatt.errors import Cancelled
    eng = _cascade_engines()[1]
    eng.settings = eng.settings.replace(prior_max_side=1024)
    image, trimap = _edge_scene(300, 400)
    t0 = [None]

    def cancel():
        if t0[0] is None:
            t0[0] = time.perf_counter()
        return True
    with pytest.raises(Cancelled, match="prior"):
        eng.matte(image, trimap, cancel=cancel)
    assert time.perf_counter() - t0[0] < 1.0


def test_the_prior_solver_lives_in_the_weights_configuration():
    from nuke_hdmatt.engine.config import LIGHT, ModelConfig

    cfg = LIGHT.replace(variant="D", prior_solver="cf+knn")
    assert ModelConfig.from_json(cfg.to_json()).prior_solver == "cf+knn"
    old = cfg.to_dict()
    del old["prior_solver"]                 # a file written before the field existed
    assert ModelConfig.from_dict(old).prior_solver == "cf"
    for bad in ("lkm", "cf+cf", "", "cf+"):
        with pytest.raises(ValueError, match="prior solver"):
            LIGHT.replace(prior_solver=bad)


def test_the_engine_solves_the_prior_its_weights_name():
    import torch

    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.engine.config import LIGHT
    from nuke_hdmatt.engine.network import HDMattNet

    image, trimap, _ = disc_scene(80, 100)
    torch.manual_seed(0)
    for solver in ("cf", "sm"):
        net = HDMattNet(LIGHT.replace(variant="D", prior_solver=solver))
        eng = Engine(net, torch.device("cpu"), patch=64, overlap=16, prior="global")
        np.testing.assert_array_equal(eng._prior(image, trimap, None, None)[0],
                                      global_prior(image, trimap, solver=solver))
    assert not np.array_equal(global_prior(image, trimap, solver="cf"),
                              global_prior(image, trimap, solver="sm"))


def test_an_image_a_hair_over_one_is_solved_without_warnings():
    import warnings

    image, trimap, _ = disc_scene()
    image = image / image.max() * np.float32(1.0000001)     # as resampling can overshoot
    assert image.max() > 1.0 and (trimap == 0).any() and (trimap == 1).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prior = compute_prior(image, trimap, "global", solver="cf+sm")
    assert np.isfinite(prior).all() and prior.min() >= 0 and prior.max() <= 1


def test_shared_matting_polls_cancel_between_steps():
    from nuke_hdmatt.engine.shared_matting import estimate_alpha_sm
    from nuke_hdmatt.errors import Cancelled
    image, trimap, _ = disc_scene()
    polls = []
    with pytest.raises(Cancelled):
        estimate_alpha_sm(torch.from_numpy(image), torch.from_numpy(trimap),
                          cancel=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4


@pytest.mark.slow
@pytest.mark.needs_data
def test_ported_solvers_match_pymatting_on_dev_images():
    """Mean abs difference over the unknown pixels <= 0.01 (all 36 cases:
    benchmarks/prior_ports.py); here the smallest unknown region, to stay quick."""
    pymatting = pytest.importorskip("pymatting")
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.training import shared_data_dir
    dev = shared_data_dir() / "alphamatting-dev"
    if not (dev / "image").is_dir():
        pytest.skip(f"{dev} not found")
    for name, ts in (("GT05", "trimap1"),):
        image, tri, _ = load_case(dev, name, ts)
        image = np.clip(image, 0, 1)
        u = tri == 0.5
        for solver, fn in (("cf", pymatting.estimate_alpha_cf), ("sm", pymatting.estimate_alpha_sm)):
            want = np.clip(fn(image.astype(np.float64), tri.astype(np.float64)), 0, 1)
            got = compute_prior(image, tri, "global", max_side=10_000, solver=solver)
            assert np.abs(got - want)[u].mean() <= 0.01, (name, ts, solver)


def test_the_cf_and_sm_prior_imports_neither_pymatting_nor_numba():
    """Nothing compiles at first use on the inference path (numba took ~90 s on a fresh
    install when PyMatting solved the prior)."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "sys.path.insert(0, 'tests')\n"
            "from test_engine_prior import disc_scene\n"
            "from nuke_hdmatt.engine.prior import compute_prior\n"
            "image, trimap, _ = disc_scene(60, 80)\n"
            "compute_prior(image, trimap, 'global', solver='cf+sm')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pymatting', 'numba')))\n")
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout


def test_a_frame_narrower_than_a_window_is_refused_by_closed_form_and_falls_back():
    from nuke_hdmatt.engine import closed_form
    img = torch.rand(3, 1, 50)
    tri = torch.full((1, 50), 0.5)
    tri[0, 0], tri[0, -1] = 0.0, 1.0
    with pytest.raises(ValueError, match="at least 3x3"):
        closed_form.solve(img, tri)


def test_a_solve_short_of_iterations_warns_and_returns_its_iterate(monkeypatch):
    from nuke_hdmatt.engine import closed_form
    image, trimap, alpha = disc_scene()
    monkeypatch.setattr(closed_form, "MAX_ITER", 2)
    monkeypatch.setattr(closed_form.solve, "__defaults__",
                        (closed_form.EPSILON, closed_form.RADIUS, closed_form.RTOL, 2, None, True))
    with pytest.warns(RuntimeWarning, match="short of convergence"):
        prior = compute_prior(image, trimap, "global", solver="cf")
    assert np.isfinite(prior).all() and np.array_equal(prior[trimap != 0.5], trimap[trimap != 0.5])


def test_a_pymatting_prior_leaves_torch_on_its_callers_thread_count():
    # numba's OpenMP pool (PyMatting's knn / lbdm / rw solvers) moves the runtime torch shares
    # to more threads; the network and the foreground would then run on them. A fresh
    # process, so the order of events is the test's own.
    import os
    import subprocess
    import sys
    pytest.importorskip("pymatting")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("numba's pool has one thread on one core: nothing to move")
    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "(torch.rand(1000, 1000) * 2).sum()\n"
        "from nuke_hdmatt.engine.prior import solve\n"
        "rng = np.random.default_rng(0)\n"
        "img = rng.random((40, 50, 3), dtype=np.float32)\n"
        "tri = np.full((40, 50), 0.5, np.float32); tri[:10] = 1; tri[-10:] = 0\n"
        "solve(img, tri, 'knn')\n"
        "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"


def test_auto_detail_blends_the_cascade_with_the_weights_detail_model():
    """detail "auto": the step per pixel from the detail model the weights carry; without
    one, the fixed step. The record names which."""
    from nuke_hdmatt.engine.detail import FEATURES, DetailModel
    from nuke_hdmatt.engine.settings import FIXED_DETAIL
    cascade, _ = _cascade_engines()
    torch.manual_seed(1)
    torch.nn.init.normal_(cascade.net.decoder.head.weight, std=0.5)
    image, trimap = _edge_scene(100, 150)
    assert cascade.settings.detail == "auto" and cascade.detail == FIXED_DETAIL
    assert cascade.params()["detail"] == FIXED_DETAIL
    fixed = cascade.matte(image, trimap)
    w = np.zeros((1, len(FEATURES)), np.float32)
    w[0, FEATURES.index("coarse")] = 3.0
    model = DetailModel(np.zeros(len(FEATURES), np.float32), np.ones(len(FEATURES), np.float32),
                        [(w, np.array([-1.0], np.float32))])
    cascade.detail_model, cascade.detail_digest = model, "f" * 64
    assert cascade.params()["detail"] == "auto:" + "f" * 12
    for prior in ("global", "local"):  # no detail step: not in the cache key or the stamp
        other = copy.copy(cascade)
        other.settings = cascade.settings.replace(prior=prior)
        assert "detail" not in other.params()
    stages = []
    cascade.on_stage = lambda name, seconds: stages.append(name)
    got = cascade.matte(image, trimap)
    assert "detail" in stages
    cascade.settings = cascade.settings.replace(detail=1.0)
    cascade.on_stage = None
    fine = cascade.matte(image, trimap)
    cascade.settings = cascade.settings.replace(detail=0.0)
    coarse = cascade.matte(image, trimap)
    np.testing.assert_allclose(got, model.blend(image, trimap, coarse, fine), atol=1e-6)
    assert np.abs(got - fixed).max() > 1e-3


def test_the_detail_models_tiles_count_in_the_frames_progress(monkeypatch):
    """With a detail model the blend's tiles are the frame's last part: the bar does not sit
    at 100 % through them (2-3 s of a 6K CPU frame)."""
    from nuke_hdmatt.engine import detail
    from nuke_hdmatt.engine.detail import FEATURES, DetailModel
    monkeypatch.setattr(detail, "TILE", 32)          # several tiles on a small frame
    cascade, _ = _cascade_engines()
    model = DetailModel(np.zeros(len(FEATURES), np.float32), np.ones(len(FEATURES), np.float32),
                        [(np.zeros((1, len(FEATURES)), np.float32), np.zeros(1, np.float32))])
    cascade.detail_model, cascade.detail_digest = model, "f" * 64
    image, trimap = _edge_scene(100, 150)
    seen = []
    cascade.matte(image, trimap, progress=lambda d, t, s: seen.append((d, t, s)))
    tiles = len(detail.unknown_tiles(trimap))
    assert tiles > 1 and [s for *_, s in seen][-tiles:] == ["detail"] * tiles
    assert "detail" not in [s for *_, s in seen][:-tiles]
    assert [d for d, *_ in seen] == sorted(d for d, *_ in seen)
    assert len({t for _, t, _ in seen}) == 1 and seen[-1][0] == seen[-1][1]
    assert seen[-tiles - 1][0] == seen[-1][0] - tiles    # one step a tile


def test_the_cascade_flip_averages_its_coarse_pass():
    """With flip (the default) the cascade's 1024 px alpha is the small frame's flip-averaged
    alpha, as a frame of that size gets on its own; the full-resolution pass runs once."""
    from nuke_hdmatt.engine.guided import guided_upsample
    from nuke_hdmatt.engine.prior import downsample
    cascade, plain = _cascade_engines()
    once = _cascade_engines(flip=False)[0]
    for eng in (cascade, plain, once):
        torch.manual_seed(1)
        torch.nn.init.normal_(eng.net.decoder.head.weight, std=0.5)
    image, trimap = _edge_scene(100, 150)
    small = downsample(image, trimap, 64)
    want = guided_upsample(plain.matte(*small), small[0], image, trimap)
    got = cascade._prior(image, trimap, None, None)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - once._prior(image, trimap, None, None)[0]).max() > 1e-3


def _edge_cost_reference(image, px, py, sx, sy):
    """PyMatting's Ep as its kernel reads it: four neighbours gathered at every step (rows
    stepped by the x increment, neighbours clamped to the frame)."""
    h, w, _ = image.shape
    at = lambda y, x: image[y.clamp(0, h - 1), x.clamp(0, w - 1)]
    spx, spy = sx - px, sy - py
    d = torch.hypot(spx, spy)
    steps = torch.ceil(d).clamp(1, 10)
    step_x, step_y = spx / steps, spy / steps
    total = torch.zeros(d.shape, dtype=torch.float32)
    for i in range(11):
        qx, qy = torch.trunc(px + i * step_x).long(), torch.trunc(py + i * step_x).long()
        ix = 0.5 * (at(qy, qx + 1) - at(qy, qx - 1))
        iy = 0.5 * (at(qy + 1, qx) - at(qy - 1, qx))
        v = step_x.float()[:, None] * ix + step_y.float()[:, None] * iy
        total += torch.where((i <= steps) & (d != 0), torch.sqrt((v * v).sum(-1)), 0.0)
    return total.double()


def test_shared_mattings_edge_cost_from_the_frames_gradients_is_pymattings():
    """The edge cost reads the frame's central differences computed once: equal, to the bit,
    to gathering four neighbours a step, also where PyMatting's quirk steps a row off the
    frame."""
    from nuke_hdmatt.engine.shared_matting import _edge_cost, _Frame
    g = torch.Generator().manual_seed(0)
    h, w = 37, 53
    image = torch.rand(h, w, 3, generator=g)
    fr = _Frame(image, torch.full((h, w), 0.5))
    n = 20_000
    px, sx = (torch.randint(0, w, (n,), generator=g).double() for _ in range(2))
    py, sy = (torch.randint(0, h, (n,), generator=g).double() for _ in range(2))
    qy_last = torch.trunc(py + 10 * (sx - px) / torch.ceil(torch.hypot(sx - px, sy - py)).clamp(1, 10))
    assert ((qy_last < 0) | (qy_last >= h)).any()           # the quirk leaves the frame here
    assert torch.equal(_edge_cost(fr, px, py, sx, sy), _edge_cost_reference(image, px, py, sx, sy))


@pytest.mark.parametrize("flip", [True, False])
def test_a_cascade_frame_counts_one_forward_progress_over_its_passes(flip, monkeypatch):
    """The coarse passes and the full-resolution pass add into one count: done only grows,
    total never changes and is reached (a count restarting per pass ran the Nuke node's bar
    backwards), and the encoding pass reports too (it is most of a pass's time)."""
    from nuke_hdmatt.engine.prior import downsample
    from nuke_hdmatt.engine.streamed_pass import plan_pass
    cascade, _ = _cascade_engines(flip=flip)
    image, trimap = _edge_scene(100, 150)
    seen = []
    cascade.matte(image, trimap, progress=lambda d, t, s: seen.append((d, t, s)))
    small = downsample(image, trimap, 64)[1]
    coarse = [plan_pass(cascade, t).steps for t in ([small, small[:, ::-1]] if flip else [small])]
    full = plan_pass(cascade, trimap)
    assert {t for _, t, _ in seen} == {sum(coarse) + full.steps}
    assert [d for d, *_ in seen] == sorted(d for d, *_ in seen) and seen[-1][0] == seen[-1][1]
    stages = [s for *_, s in seen]
    n_coarse = stages.count("coarse patches")
    assert n_coarse and stages[:n_coarse] == ["coarse patches"] * n_coarse
    assert set(stages[n_coarse:]) == {"patches"}
    assert seen[n_coarse - 1][0] == sum(coarse)          # the coarse passes end where planned
    # a report per batch of pass 1 (queries, then clean bordering cells) and of pass 2
    b = cascade.batch
    n_query, n_border = len(full.queries), len(full.encoded) - len(full.queries)
    assert len(stages) - n_coarse == -(-n_query // b) * 2 + -(-n_border // b)
    # each pass's cells are planned once, for the progress and the pass alike
    from nuke_hdmatt.engine import runner
    planned = []
    monkeypatch.setattr(runner, "plan_pass", lambda eng, t: planned.append(t.shape) or plan_pass(eng, t))
    cascade.matte(image, trimap)
    assert len(planned) == len(coarse) + 1
    # detail 0 skips the full-resolution pass: the plan holds the coarse passes alone
    cascade.settings = cascade.settings.replace(detail=0.0)
    seen.clear()
    cascade.matte(image, trimap, progress=lambda d, t, s: seen.append((d, t, s)))
    assert seen[-1] == (sum(coarse), sum(coarse), "coarse patches")


def test_a_local_prior_counts_its_cells_before_the_network():
    from nuke_hdmatt.engine.streamed_pass import plan_pass
    eng = _cascade_engines()[1]
    eng.settings = eng.settings.replace(prior="local")
    image, trimap = _edge_scene(100, 150)
    seen = []
    eng.matte(image, trimap, progress=lambda d, t, s: seen.append((d, t, s)))
    plan = plan_pass(eng, trimap)
    cells = len(plan.queries)
    assert seen[:cells] == [(i + 1, cells + plan.steps, "prior") for i in range(cells)]
    assert seen[-1] == (cells + plan.steps, cells + plan.steps, "patches")
