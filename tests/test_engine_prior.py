"""The closed-form prior of variant D: global (downsampled) and local (per patch)."""

import numpy as np

from nuke_hdmatt.engine.prior import compute_prior, global_prior, local_prior, snap_resized_trimap


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


def test_a_trimap_without_foreground_gives_one_half_not_an_error():
    image, trimap, _ = disc_scene()
    trimap[trimap == 1.0] = 0.5
    prior = compute_prior(image, trimap, "global")
    assert np.all(prior[trimap == 0.5] == 0.5) and np.all(prior[trimap == 0] == 0)


def test_resized_trimap_keeps_known_only_where_a_cell_was_entirely_known():
    t = np.array([[0.0, 0.25, 1.0, 0.9999999]], np.float32)
    np.testing.assert_array_equal(snap_resized_trimap(t), [[0.0, 0.5, 1.0, 1.0]])
