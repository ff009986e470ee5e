"""Each synthesis step on its own, on small arrays with known answers."""

import warnings

import numpy as np
import pytest

from nuke_hdmatt.training import VALIDATION_IMAGES, compositing, procedural, resampling
from nuke_hdmatt.training import transforms as T
from nuke_hdmatt.training.foreground_kinds import procedural_foreground
from nuke_hdmatt.training.sources import ForegroundSource, shared_data_dir, training_names
from nuke_hdmatt.training.synthesis import SampleSynthesizer, SynthesisConfig


def test_srgb_curve_is_the_one_ocio_uses():
    ocio = pytest.importorskip("PyOpenColorIO")
    config = ocio.Config.CreateFromFile("ocio://cg-config-latest")
    proc = config.getProcessor("Linear Rec.709 (sRGB)", "sRGB Encoded Rec.709 (sRGB)")
    cpu = proc.getDefaultCPUProcessor()
    lin = np.linspace(0.0, 1.0, 301, dtype=np.float32)
    rgb = np.ascontiguousarray(np.repeat(lin[:, None], 3, axis=1))
    cpu.applyRGB(rgb)
    assert np.allclose(compositing.linear_to_srgb(lin), rgb[:, 0], atol=2e-5)
    assert np.allclose(compositing.srgb_to_linear(compositing.linear_to_srgb(lin)), lin, atol=1e-5)


def test_composite_is_linear_light():
    white = np.ones((2, 2, 3), np.float32)
    black = np.zeros((2, 2, 3), np.float32)
    half = compositing.composite(white, black, np.full((2, 2), 0.5, np.float32))
    # 50 % coverage of white over black is 0.5 in light = 0.7354 sRGB, not 0.5.
    assert np.allclose(half, 1.055 * 0.5 ** (1 / 2.4) - 0.055, atol=1e-5)
    assert np.allclose(compositing.composite(white, black, np.ones((2, 2))), 1.0)


def test_merge_over_equals_compositing_twice():
    rng = np.random.default_rng(0)
    fa, fb, bg = (rng.random((5, 5, 3)).astype(np.float32) for _ in range(3))
    aa, ab = rng.random((5, 5)).astype(np.float32), rng.random((5, 5)).astype(np.float32)
    fm, am = compositing.merge_over(fa, aa, fb, ab)
    once = compositing.composite(fm, bg, am)
    twice = compositing.composite(fa, compositing.composite(fb, bg, ab), aa)
    assert np.allclose(once, twice, atol=1e-4)


def test_area_resize_keeps_thin_line_coverage():
    img = np.zeros((64, 64), np.float32)
    img[:, 21] = 0.3                              # a 1 px line; 2x point sampling could miss it
    small = resampling.resize_area(img, 32, 32)
    assert small.sum() * 4 == pytest.approx(img.sum(), rel=1e-5)
    assert small[:, 10].max() == pytest.approx(0.15, abs=1e-6)
    m = resampling.area_matrix(7, 3)
    assert np.allclose(m.sum(axis=1), 1.0)
    rgb = np.random.default_rng(1).random((9, 6, 3)).astype(np.float32)
    per_channel = np.stack([resampling.resize_area(rgb[..., c], 4, 5) for c in range(3)], -1)
    assert np.allclose(resampling.resize_area(rgb, 4, 5), per_channel, atol=1e-6)


def test_a_sub_pixel_strand_splats_its_area():
    rng = np.random.default_rng(0)
    width, length = 0.4, 40.0
    fg, alpha = procedural.render_strands(
        rng, 64, roots=np.array([[32.2, 10.0]], np.float32), angles=np.zeros(1, np.float32),
        lengths=np.array([length], np.float32), widths=np.array([width], np.float32),
        colours=np.array([[1.0, 0.0, 0.0]], np.float32), curl=0.0, wave=0.0,
        opacity=(1.0, 1.0))
    coverage = -np.log1p(-alpha.astype(np.float64)).sum()
    # Tapering to 30 % at the tip: mean width 0.65 x root width.
    assert coverage == pytest.approx(width * length * 0.65, rel=0.05)
    assert alpha.max() < 0.5                          # sub-pixel: never solid
    # Strand colour, darkened towards the root (shade 0.75 in linear at the root).
    red = fg[alpha > 0.05]
    assert np.all(red[:, 1:] == 0) and red[:, 0].min() > 0.85 and red[:, 0].max() <= 1.0


def test_procedural_foreground_is_seeded_and_valid():
    a = procedural_foreground(np.random.default_rng(5), 96)
    b = procedural_foreground(np.random.default_rng(5), 96)
    assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.fg, b.fg)
    assert a.alpha.shape == (96, 96) and a.fg.shape == (96, 96, 3)
    assert 0.0 <= a.alpha.min() and a.alpha.max() <= 1.0 and 0 <= a.fg.min() and a.fg.max() <= 1
    bg = procedural.procedural_background(np.random.default_rng(1), 40)
    assert bg.shape == (40, 40, 3) and bg.dtype == np.float32


def _square_source(size=300, max_scale=1.0):
    alpha = np.zeros((size, size), np.float32)
    alpha[140:160, 140:160] = 1.0
    alpha[140:160, 160] = 0.5
    fg = np.full((size, size, 3), 0.25, np.float32)
    return ForegroundSource(fg=fg, alpha=alpha, name="square",
                            unknown_yx=np.argwhere((alpha > 0) & (alpha < 1)), max_scale=max_scale)


def test_source_region_mirrors_outside_the_frame():
    alpha = (np.arange(12) * 20 + 10).astype(np.uint8).reshape(3, 4)   # touches every side
    src = ForegroundSource(np.zeros((3, 4, 3), np.uint8), alpha, "x", np.zeros((0, 2)))
    _, a = src.region(-1, 4, -2, 6)
    # rows -1..3 -> 1,0,1,2,1 ; columns -2..5 -> 2,1,0,1,2,3,2,1
    expected = alpha[[1, 0, 1, 2, 1]][:, [2, 1, 0, 1, 2, 3, 2, 1]] / 255.0
    assert np.allclose(a, expected)
    # A subject that does not reach a side is not mirrored past it.
    alpha = np.zeros((4, 4), np.uint8)
    alpha[1:, 1:3] = 200                                    # touches the bottom only
    src = ForegroundSource(np.zeros((4, 4, 3), np.uint8), alpha, "y", np.zeros((0, 2)))
    _, a = src.region(-2, 7, 0, 4)
    assert np.allclose(a[:2], 0) and np.allclose(a[2:6], alpha / 255.0)
    assert np.allclose(a[6], alpha[2] / 255.0)              # mirrored below


def test_place_foreground_keeps_coverage_and_scales_it():
    src = _square_source()
    place = T.PlaceForeground(96, max_rotation=0.0, flip=False, min_fill=10.0)
    fg, alpha = place(src, np.random.default_rng(0))
    assert alpha.sum() == pytest.approx(src.alpha.sum(), rel=1e-4)
    assert np.allclose(fg[alpha > 0], 0.25, atol=1e-5)
    # Halving: block-averaged, area a quarter of the source's.
    half = T.PlaceForeground(96, max_rotation=0.0, flip=False, min_fill=10.0)
    _, a2 = half(_square_source(max_scale=0.5), np.random.default_rng(0))
    assert a2.sum() == pytest.approx(src.alpha.sum() / 4, rel=0.05)
    # Rotation moves pixels, not coverage.
    rot = T.PlaceForeground(96, max_rotation=15.0, min_fill=10.0)
    _, a3 = rot(src, np.random.default_rng(3))
    assert a3.sum() == pytest.approx(src.alpha.sum(), rel=0.02)


def test_a_native_source_keeps_its_own_pixels_where_others_shrink():
    from dataclasses import replace

    src = replace(_square_source(), native=True)
    # min_fill 0.1: a 300 px source on a 96 px canvas would be drawn at 0.03-1x
    shrink = T.PlaceForeground(96, max_rotation=0.0, flip=False, min_fill=0.1)
    native = T.PlaceForeground(96, max_rotation=0.0, flip=False, min_fill=0.1, native=True)
    for seed in range(4):
        _, a = native(src, np.random.default_rng(seed))
        assert a.sum() == pytest.approx(src.alpha.sum(), rel=1e-4)      # scale 1: same area
    shrunk = [shrink(src, np.random.default_rng(seed))[1].sum() for seed in range(4)]
    assert min(shrunk) < 0.5 * src.alpha.sum()
    _, a = native(_square_source(), np.random.default_rng(0))          # not native: shrinks
    assert a.sum() == pytest.approx(shrunk[0], rel=1e-4)


def test_plate_scale_strands_are_wider_and_zero_keeps_the_old_stream():
    def opaque_strand_pixels(scale):          # the same strands (seed), wider
        a = procedural.hair_wisps(np.random.default_rng(2), 128, width_scale=scale)[1]
        return (a > 0.98).sum()

    assert opaque_strand_pixels(3.0) > 1.8 * opaque_strand_pixels(1.0)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    old = procedural_foreground(a, 96)
    new = procedural_foreground(b, 96, plate_scale=0.0)
    assert np.array_equal(old.alpha, new.alpha) and a.random() == b.random()
    wide = procedural_foreground(np.random.default_rng(5), 96, plate_scale=1.0)
    assert not np.array_equal(old.alpha, wide.alpha)


def test_random_trimap_never_marks_fractional_alpha_known():
    rng = np.random.default_rng(0)
    alpha = procedural_foreground(np.random.default_rng(2), 80).alpha
    scene = T.RandomTrimap(radius=(2.0, 6.0))({"alpha": alpha}, rng)
    tri = scene["trimap"]
    assert set(np.unique(tri)) <= {0.0, 0.5, 1.0}
    assert (tri == 1.0).any() and np.all(scene["alpha"][tri == 1.0] == 1.0)
    assert np.all(scene["alpha"][tri == 0.0] == 0.0)
    assert np.abs(scene["alpha"] - alpha).max() <= 1 / 512
    frac = (alpha > 1 / 512) & (alpha < 1 - 1 / 512)
    assert np.all(tri[frac] == 0.5)
    # The band is grown by at least the smallest radius (2 px) on the background side.
    from scipy import ndimage
    grown = ndimage.binary_dilation(alpha > 1 / 512, iterations=1)
    assert np.all(tri[grown] != 0.0)


def test_closed_form_prior_solves_a_soft_edge():
    x = np.linspace(0, 1, 48, dtype=np.float32)
    alpha = np.tile(np.clip((x - 0.3) / 0.4, 0, 1), (48, 1))
    fg = np.zeros((48, 48, 3), np.float32)
    fg[..., 0] = 0.9
    bg = np.zeros((48, 48, 3), np.float32)
    bg[..., 2] = 0.8
    scene = {"fg": fg, "bg": bg, "alpha": alpha}
    # With sensor noise, as every plate has: on a noise-free ramp all colours lie on one curve,
    # nearly every 3x3 window's covariance is singular, and the torch solve's tolerance (set
    # on real images, engine/closed_form.py RTOL) stops far from PyMatting's answer.
    scene = T.Composite(noise_p=1.0)(scene, np.random.default_rng(0))
    tri = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5)).astype(np.float32)
    tri[:, 10:38] = 0.5
    scene["trimap"] = tri
    prior = T.ClosedFormPrior()(scene)["prior"]
    assert np.all(prior[tri == 1] == 1) and np.all(prior[tri == 0] == 0)
    assert np.abs(prior - alpha)[tri == 0.5].mean() < 0.1
    # Solved at half size and enlarged (the engine's global prior on a large plate):
    # known pixels still exact, a soft edge still found, but not the same numbers.
    small = T.ClosedFormPrior(downscale_p=1.0, factors=(2,))(dict(scene), np.random.default_rng(0))["prior"]
    assert np.all(small[tri == 1] == 1) and np.all(small[tri == 0] == 0)
    assert np.abs(small - alpha)[tri == 0.5].mean() < 0.1
    assert not np.array_equal(small, prior)
    # No known foreground: no solve possible; the samples get the engine's colour prior
    # for a trimap of one known region (background-coloured: 0; far from it: 1)
    from nuke_hdmatt.engine.prior import one_sided_prior
    only_bg = dict(scene, trimap=np.where(tri == 1, 0.5, tri).astype(np.float32))
    got = T.ClosedFormPrior()(dict(only_bg))["prior"]
    np.testing.assert_array_equal(got, one_sided_prior(only_bg["image"].astype(np.float32),
                                                       only_bg["trimap"]))
    assert got[tri == 1].mean() > 0.9 and not np.all(got[only_bg["trimap"] == 0.5] == 0.5)


def _soft_edge_scene(size=64):
    x = np.linspace(0, 1, size, dtype=np.float32)
    alpha = np.tile(np.clip((x - 0.3) / 0.4, 0, 1), (size, 1))
    fg = np.zeros((size, size, 3), np.float32)
    fg[..., 0] = 0.9
    bg = np.zeros((size, size, 3), np.float32)
    bg[..., 2] = 0.8
    scene = T.Composite(noise_p=0.0)({"fg": fg, "bg": bg, "alpha": alpha}, np.random.default_rng(0))
    tri = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5)).astype(np.float32)
    tri[:, size // 5: size - size // 5] = 0.5
    scene["trimap"] = tri
    return scene


def test_cascade_prior_is_the_network_run_on_the_shrunk_scene():
    from nuke_hdmatt.engine.runner import Engine
    from nuke_hdmatt.engine.weights import default_weights_path
    weights = default_weights_path()
    if weights is None:
        pytest.skip("no bundled weights (nuke_hdmatt/model/hdmatt.safetensors)")
    # not snapped to 0 and 1: the engine's coarse pass is not
    eng = Engine.load(weights, device="cpu", prior="global", snap=0.0)
    solver = eng.cfg.prior_solver
    scene = _soft_edge_scene()
    tri = scene["trimap"]
    make = lambda p: T.ClosedFormPrior(1.0, (2,), solver, cascade_p=p, cascade_weights=str(weights))
    cascade = make(1.0)(dict(scene), np.random.default_rng(0))["prior"]
    classical = make(0.0)(dict(scene), np.random.default_rng(0))["prior"]
    assert np.all(cascade[tri == 1] == 1) and np.all(cascade[tri == 0] == 0)
    assert not np.allclose(cascade, classical, atol=1e-3)
    # by definition: the engine's alpha on the half-size scene (given the classical prior
    # there), enlarged by the guided upsampling the engine's cascade uses
    small_tri = T.snap_shrunk_trimap(tri, 32, 32)
    small_img = resampling.resize_area(scene["image"], 32, 32)
    small = eng.matte(small_img, small_tri, prior=T._classical(small_img, small_tri, solver))
    from nuke_hdmatt.engine.guided import guided_upsample
    expected = guided_upsample(small, small_img, scene["image"], tri)
    unknown = tri == 0.5
    assert np.allclose(cascade[unknown], expected[unknown], atol=1e-5)
    other = "cf" if solver != "cf" else "cf+knn"
    with pytest.raises(ValueError, match="prior"):
        T.ClosedFormPrior(1.0, (2,), other, 1.0, str(weights))(dict(scene), np.random.default_rng(0))
    with pytest.raises(ValueError, match="weights"):
        T.ClosedFormPrior(1.0, (2,), solver, cascade_p=0.5)


def test_crop_patches_from_one_scene():
    rng = np.random.default_rng(0)
    s = 64
    alpha = procedural_foreground(np.random.default_rng(4), s).alpha
    scene = {"alpha": alpha, "fg": np.full((s, s, 3), 0.8, np.float32),
             "bg": np.full((s, s, 3), 0.1, np.float32)}
    scene = T.Composite(noise_p=0.0)(scene, rng)
    scene = T.RandomTrimap((2, 4))(scene, rng)
    crop = T.CropPatches(16, crop_sizes=(16, 32), n_context=3)
    for seed in range(4):
        sample = crop(scene, np.random.default_rng(seed))
        assert sample["image"].shape == (4, 3, 16, 16) and sample["alpha"].shape == (4, 16, 16)
        assert (sample["trimap"][0] == 0.5).any()                 # query has unknown pixels
        assert np.all(sample["alpha"][sample["trimap"] == 1] == 1)
        assert np.all(sample["alpha"][sample["trimap"] == 0] == 0)
        y, x, side = sample["boxes"][1]
        if side == 16:      # no resize: the context patch is the scene window exactly
            assert np.allclose(sample["image"][1].transpose(1, 2, 0), scene["image"][y:y + 16, x:x + 16])


def test_context_windows_are_chosen_over_the_scene_by_the_engines_rule():
    from nuke_hdmatt.engine.pool import candidates

    s, side = 200, 20
    trimap = np.zeros((s, s), np.float32)
    trimap[:, 100:] = 1.0
    trimap[:, 95:105] = 0.5                        # a vertical unknown band down the scene
    grey = np.zeros((s, s, 3), np.float32)
    scene = {"image": grey, "fg": grey, "bg": grey, "trimap": trimap,
             "alpha": (trimap > 0.25).astype(np.float32)}
    crop = T.CropPatches(20, crop_sizes=(side,), n_context=6)
    from nuke_hdmatt.engine.settings import InferenceSettings
    engine = InferenceSettings()
    stride = side - round(side * engine.overlap / engine.patch)
    starts = set(range(0, s - side, stride)) | {s - side}
    far = 0
    for seed in range(6):
        boxes = crop(scene, np.random.default_rng(seed))["boxes"]
        qy, qx, _ = boxes[0]
        ctx = [(int(y), int(x)) for y, x, _ in boxes[1:]]
        assert all(y in starts and x in starts for y, x in ctx)        # cells of the grid
        assert len(set(ctx)) == 6
        for y, x in ctx:                                # unknown, or beside an unknown cell
            assert (trimap[y:y + side, max(0, x - stride):x + side + stride] == 0.5).any()
        # the query's own cell is not its context, and the rest is the engine's choice
        assert all((y - qy) ** 2 + (x - qx) ** 2 >= (stride / 2) ** 2 for y, x in ctx)
        pts = {(y / stride, x / stride): (y, x) for y, x in ctx}
        assert set(crop.grid_context(trimap, tuple(boxes[0]))) == set(ctx)
        assert set(candidates((qy / stride, qx / stride), list(pts), 6)) == set(pts)
        far = max(far, max(abs(y - qy) for y, _ in ctx))
    assert far > s / 2                  # strata reach across the scene, not only neighbours
    legacy = T.CropPatches(20, crop_sizes=(side,), n_context=6, context="random")
    assert legacy(scene, np.random.default_rng(0))["boxes"].shape == (7, 3)
    with pytest.raises(ValueError, match="context rule"):
        T.CropPatches(20, context="grid")


def test_small_scenes_fill_the_context_with_random_windows():
    trimap = np.zeros((40, 40), np.float32)
    trimap[:, 18:22] = 0.5
    grey = np.zeros((40, 40, 3), np.float32)
    scene = {"image": grey, "fg": grey, "bg": grey, "trimap": trimap,
             "alpha": np.zeros((40, 40), np.float32)}
    sample = T.CropPatches(16, crop_sizes=(32,), n_context=5)(scene, np.random.default_rng(1))
    assert sample["boxes"].shape == (6, 3) and sample["image"].shape == (6, 3, 16, 16)


def test_synthesizer_is_reproducible_and_rejects_unknown_keys():
    cfg = SynthesisConfig.for_patch(32, scene_size=80, n_context=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth = SampleSynthesizer(cfg, dev=None, backgrounds=None)
    synth.dev, synth.backgrounds = None, None          # procedural only, no shared data
    a = synth(np.random.default_rng([7, 1]))
    b = synth(np.random.default_rng([7, 1]))
    for k in ("image", "alpha", "trimap", "fg", "bg"):
        assert np.array_equal(a[k], b[k])
    assert a["image"].shape == (3, 3, 32, 32)
    from nuke_hdmatt.errors import UsageError
    with pytest.raises(UsageError, match="pach"):
        SynthesisConfig.from_dict({"pach": 3})
    assert SynthesisConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.needs_data
def test_validation_images_are_never_training_sources():
    dev = shared_data_dir() / "alphamatting-dev"
    if not dev.exists():
        pytest.skip(f"shared data not found at {dev}")
    names = training_names(dev)
    assert len(names) == 13
    assert not set(names) & set(VALIDATION_IMAGES)


def test_background_blur_keeps_mean_and_softens():
    bg = np.zeros((32, 32, 3), np.float32)
    bg[:, ::2] = 1.0                                     # 1 px stripes
    out = T.BackgroundBlur(p=1.0, sigma=(2.0, 2.0))({"bg": bg.copy()}, np.random.default_rng(0))["bg"]
    assert out.mean() == pytest.approx(bg.mean(), rel=1e-3)
    assert out[:, 8:-8].std() < 0.02 * bg.std()          # stripes gone (away from borders)
    same = T.BackgroundBlur(p=0.0)({"bg": bg.copy()}, np.random.default_rng(0))["bg"]
    assert np.array_equal(same, bg)
