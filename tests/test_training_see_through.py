"""Procedural see-through foregrounds and the colour-overlap transform (issue 19, item 3)."""

import numpy as np
import pytest

from nuke_hdmatt.training.foreground_kinds import procedural_foreground
from nuke_hdmatt.training.see_through import mesh, smoke, translucent_fabric
from nuke_hdmatt.training.transforms import ColourOverlap

SIZE = 192


def _partial(alpha):
    return (alpha > 0.02) & (alpha < 0.98)


@pytest.mark.parametrize("make", [translucent_fabric, mesh, smoke])
def test_see_through_layers_are_straight_colour_and_alpha_in_range(make):
    fg, alpha = make(np.random.default_rng(3), SIZE)
    assert fg.shape == (SIZE, SIZE, 3) and alpha.shape == (SIZE, SIZE)
    assert fg.dtype == np.float32 and alpha.dtype == np.float32
    assert 0 <= fg.min() and fg.max() <= 1 and 0 <= alpha.min() and alpha.max() <= 1
    assert _partial(alpha).mean() > 0.02           # a large unknown region, not a thin edge


def test_fabric_is_evenly_semi_opaque_over_a_large_area():
    shares = []
    for seed in range(6):
        _, alpha = translucent_fabric(np.random.default_rng(seed), SIZE)
        inside = alpha > 0.02
        shares.append(_partial(alpha)[inside].mean())
    # most of the cloth is partial alpha (a hem may be opaque), unlike any solid object
    assert np.median(shares) > 0.7


def test_mesh_has_regular_holes_and_opaque_wires_inside_its_region():
    for seed in range(4):
        _, alpha = mesh(np.random.default_rng(seed), SIZE)
        region = alpha > 0
        from scipy import ndimage
        region = ndimage.binary_closing(region, iterations=20)
        inner = ndimage.binary_erosion(region, iterations=5)
        values = alpha[inner]
        assert (values < 0.1).mean() > 0.2          # holes
        assert (values > 0.6).mean() > 0.05         # wires


def test_smoke_has_no_hard_edges():
    _, alpha = smoke(np.random.default_rng(1), SIZE)
    step = max(np.abs(np.diff(alpha, axis=0)).max(), np.abs(np.diff(alpha, axis=1)).max())
    assert step < 0.2 and _partial(alpha).mean() > 0.1


def test_see_through_share_draws_those_kinds_and_zero_keeps_the_old_stream():
    kinds = {procedural_foreground(np.random.default_rng(s), 96, see_through=1.0).name
             for s in range(12)}
    assert kinds <= {"procedural-fabric", "procedural-mesh", "procedural-smoke"} and len(kinds) >= 2
    # see_through=0 draws nothing extra: a folder built before it regenerates the same layers
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    old = procedural_foreground(a, 96)
    new = procedural_foreground(b, 96, see_through=0.0)
    assert np.array_equal(old.alpha, new.alpha) and a.random() == b.random()


def test_colour_overlap_pulls_foreground_towards_the_background_behind_it():
    rng = np.random.default_rng(0)
    fg = np.zeros((16, 16, 3), np.float32)
    fg[..., 0] = 0.9                                    # red subject
    bg = np.zeros((16, 16, 3), np.float32)
    bg[..., 2] = 0.8                                    # blue sky
    alpha = np.full((16, 16), 0.5, np.float32)
    scene = {"fg": fg.copy(), "bg": bg, "alpha": alpha}
    out = ColourOverlap(p=1.0, share=(0.6, 0.6))(scene, rng)["fg"]
    assert out[..., 2].min() > 0.5 and out[..., 0].max() < 0.9   # bluer, less red
    untouched = {"fg": fg.copy(), "bg": bg, "alpha": alpha}
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    assert np.array_equal(ColourOverlap(p=0.0)(untouched, r1)["fg"], fg)
    assert r1.random() == r2.random()                   # p = 0 draws nothing


def test_a_flag_is_its_fabric_with_an_opaque_pole_across_the_canvas():
    from nuke_hdmatt.training.see_through import on_a_pole
    rng = np.random.default_rng(5)
    fg, alpha = translucent_fabric(rng, SIZE)
    pfg, palpha = on_a_pole(np.random.default_rng(1), fg, alpha)
    assert pfg.shape == fg.shape and palpha.shape == alpha.shape and palpha.dtype == np.float32
    full = np.nonzero((palpha == 1).all(0))[0] if (palpha == 1).all(0).any() \
        else np.nonzero((palpha == 1).all(1))[0]
    assert len(full) >= 8                                   # a pole at least 8 px wide
    moved = palpha != alpha
    assert np.array_equal(palpha[~moved], alpha[~moved])    # the fabric elsewhere unchanged
    assert 0 <= pfg.min() and pfg.max() <= 1


def test_flags_are_drawn_only_when_asked_so_older_folders_keep_their_seeds():
    """``flags`` 0 draws nothing more: the same fabric as before the option existed."""
    kinds = set()
    for seed in range(40):
        a = procedural_foreground(np.random.default_rng(seed), 96, see_through=1.0)
        b = procedural_foreground(np.random.default_rng(seed), 96, see_through=1.0, flags=0.0)
        assert np.array_equal(a.alpha, b.alpha)
        c = procedural_foreground(np.random.default_rng(seed), 96, see_through=1.0, flags=1.0)
        kinds.add((a.name, c.name))
    assert ("procedural-fabric", "procedural-flag") in kinds
    assert all(c == "procedural-flag" for a, c in kinds if a == "procedural-fabric")
