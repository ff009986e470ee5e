"""The imaging layer on the shared real data (alphamatting.com dev set, lemur)."""

import os

import numpy as np
import OpenImageIO as oiio
import pytest

from nuke_hdmatt.imaging import (
    check_trimap,
    plate_colorspace,
    read_plate,
    read_trimap,
    resolve_config,
    to_network_space,
    write_alpha,
)

# The repo lives next to shared/ (../shared/data from the repo root); never copied in.
DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))

pytestmark = [
    pytest.mark.needs_data,
    pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "alphamatting-dev")),
                       reason=f"shared data not found at {DATA}"),
]


def raw_uint8(path):
    inp = oiio.ImageInput.open(path)
    pixels = inp.read_image(0, 0, 0, 1, oiio.UINT8)
    inp.close()
    return np.asarray(pixels)[:, :, 0]


@pytest.mark.parametrize("name", ["trimap1/GT01.png", "trimap2/GT01.png"])
def test_alphamatting_trimaps_snap_exactly(name):
    path = os.path.join(DATA, "alphamatting-dev", name)
    tri = read_trimap(path)
    codes = raw_uint8(path)  # the dataset stores 0/128/255
    want = np.where(codes == 0, 0.0, np.where(codes == 255, 1.0, 0.5))
    np.testing.assert_array_equal(tri.values, want)
    plate = read_plate(os.path.join(DATA, "alphamatting-dev", "image", "GT01.png"))
    check_trimap(tri, plate)


def test_srgb_png_plate_is_already_network_space(tmp_path):
    plate = read_plate(os.path.join(DATA, "lemur", "image.png"))
    config, _ = resolve_config("ocio://cg-config-latest")
    space = plate_colorspace(plate, None, config)
    rgb = to_network_space(plate.pixels, space, config)
    np.testing.assert_allclose(rgb, plate.pixels, atol=1e-4)  # identity conversion
    tri = read_trimap(os.path.join(DATA, "lemur", "trimap.png"))
    check_trimap(tri, plate)
    out = tmp_path / "lemur_alpha.png"
    write_alpha(out, tri.values, plate, bit_depth=16)
    np.testing.assert_allclose(read_plate(out, "Y").pixels[:, :, 0], tri.values, atol=1 / 65535)
