"""Patch grid, reflective padding and appendix-A blend weights."""

import numpy as np
import pytest

from nuke_hdmatt.engine.tiling import PatchGrid, reflect_indices, stitch

AWKWARD = [(1, 1), (7, 500), (319, 321), (1000, 37), (50, 60), (640, 640), (333, 999)]


@pytest.mark.parametrize("h,w", AWKWARD)
@pytest.mark.parametrize("patch,overlap", [(64, 16), (320, 32), (96, 0)])
def test_weights_are_a_partition_of_unity(h, w, patch, overlap):
    grid = PatchGrid(h, w, patch, overlap)
    total = stitch(grid, lambda r, c: np.ones((patch, patch), np.float32))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("h,w", AWKWARD)
def test_identity_patch_function_reproduces_the_image(h, w):
    rng = np.random.default_rng(0)
    image = rng.random((h, w), dtype=np.float32)
    grid = PatchGrid(h, w, 64, 16)
    out = stitch(grid, lambda r, c: grid.extract(image, r, c))
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_weights_ramp_linearly_in_the_overlap_and_are_one_in_the_centre():
    grid = PatchGrid(500, 500, 64, 16)
    w = grid.weights(1, 1)
    assert w[32, 32] == 1.0
    row = w[32]
    np.testing.assert_allclose(row[:16], (np.arange(16) + 0.5) / 16)
    np.testing.assert_allclose(row[-16:], ((np.arange(16) + 0.5) / 16)[::-1])
    # border patches do not fade towards the frame edge: nothing else covers it
    assert grid.weights(0, 0)[0, 0] == 1.0


def test_reflect_indices_match_numpy_reflect_padding():
    for size in (1, 2, 5, 17):
        arr = np.arange(size)
        padded = np.pad(arr, (0, 40), mode="reflect") if size > 1 else np.zeros(size + 40, int)
        np.testing.assert_array_equal(arr[reflect_indices(0, size + 40, size)], padded)


def test_patch_past_the_border_is_reflected():
    image = np.arange(10 * 10, dtype=np.float32).reshape(10, 10)
    grid = PatchGrid(10, 10, 16, 4)
    patch = grid.extract(image, 0, 0)
    assert patch.shape == (16, 16)
    np.testing.assert_array_equal(patch[:10, :10], image)
    np.testing.assert_array_equal(patch[10, :10], image[8])   # mirror about the last row
    np.testing.assert_array_equal(patch[:10, 11], image[:, 7])


def test_invalid_grid_settings_raise():
    with pytest.raises(ValueError):
        PatchGrid(100, 100, 30, 8)
    with pytest.raises(ValueError):
        PatchGrid(100, 100, 64, 60)
