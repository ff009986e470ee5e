"""Reading plates: EXR variants, integer formats, channel selection, broken files."""

import numpy as np
import pytest

from imaging_fixtures import Part, rng_pixels, write_image, write_parts
from nuke_hdmatt.errors import ChannelError, MissingFileError, PlateError
from nuke_hdmatt.imaging import describe_image, read_plate


def test_overscan_data_window_kept(tmp_path):
    px = rng_pixels(12, 20, 3)
    path = write_image(tmp_path / "over.exr", px, data_origin=(-4, -2), display=(0, 0, 12, 8))
    plate = read_plate(path)
    assert plate.data_window == (-4, -2, 20, 12)
    assert plate.display_window == (0, 0, 12, 8)
    assert plate.pixels.shape == (12, 20, 3) and plate.pixels.dtype == np.float32
    assert plate.pixels.flags.c_contiguous
    np.testing.assert_array_equal(plate.pixels, px)


def test_cropped_bbox_inside_display(tmp_path):
    px = rng_pixels(5, 6, 3, seed=1)
    plate = read_plate(write_image(tmp_path / "crop.exr", px, data_origin=(10, 20),
                                   display=(0, 0, 64, 48)))
    assert plate.data_window == (10, 20, 6, 5)
    np.testing.assert_array_equal(plate.pixels, px)


@pytest.mark.parametrize("fmt", ["half", "float"])
def test_tiled_exr_half_and_float(tmp_path, fmt):
    px = rng_pixels(40, 36, 3, seed=2, scale=8.0)  # HDR values above 1 stay untouched
    plate = read_plate(write_image(tmp_path / f"tiled_{fmt}.exr", px, fmt=fmt, tile=(16, 16)))
    np.testing.assert_array_equal(plate.pixels, px)
    assert plate.is_float and plate.file_format == "openexr"


def test_channels_by_name_not_position(tmp_path):
    px = rng_pixels(4, 5, 4, seed=3)
    path = write_image(tmp_path / "bgra.exr", px, channels=("B", "G", "R", "Z"))
    plate = read_plate(path, "R,G,B")
    np.testing.assert_array_equal(plate.pixels, px[:, :, [2, 1, 0]])
    assert plate.channels == ["R", "G", "B"] and plate.pixels.flags.c_contiguous
    # a span read out of order or with gaps is picked from (Z, B: positions 3 and 0)
    np.testing.assert_array_equal(read_plate(path, "Z,B").pixels, px[:, :, [3, 0]])


def test_multipart_channels_found_in_second_part(tmp_path):
    beauty = rng_pixels(6, 8, 3, seed=4)
    aovs = rng_pixels(6, 8, 3, seed=5)
    path = write_parts(tmp_path / "mp.exr", [
        Part(beauty, ("R", "G", "B"), name="beauty"),
        Part(aovs, ("diffuse.R", "diffuse.G", "diffuse.B"), fmt="float", name="aovs")])
    plate = read_plate(path, "diffuse.R,diffuse.G,diffuse.B")
    assert plate.subimage == 1
    np.testing.assert_array_equal(plate.pixels, aovs)
    assert list(plate.spec.channelnames) == ["diffuse.R", "diffuse.G", "diffuse.B"]
    info = describe_image(path)
    assert [s["name"] for s in info["subimages"]] == ["beauty", "aovs"]


def test_missing_channel_lists_existing(tmp_path):
    path = write_image(tmp_path / "p.exr", rng_pixels(4, 4, 3))
    with pytest.raises(ChannelError) as err:
        read_plate(path, ("diffuse.R", "G", "B"), frame=12)
    msg = err.value.one_line()
    assert "diffuse.R" in msg and "R, G, B" in msg and "p.exr" in msg and "frame 12" in msg


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError) as err:
        read_plate(tmp_path / "plate.####.exr", frame=7)
    assert "plate.0007.exr" in str(err.value) and "frame 7" in str(err.value)


@pytest.mark.parametrize("tile", [None, (16, 16)], ids=["scanline", "tiled"])
def test_truncated_exr_raises_plate_error(tmp_path, tile):
    path = write_image(tmp_path / "full.exr", rng_pixels(64, 64, 3), compression="none", tile=tile)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.exr"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PlateError, match="truncated or corrupt"):
        read_plate(cut)
    head = tmp_path / "head.exr"
    head.write_bytes(data[:100])
    with pytest.raises(PlateError, match="head.exr"):
        read_plate(head)


def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.exr"
    bad.write_text("not an exr")
    with pytest.raises(PlateError):
        read_plate(bad)


@pytest.mark.parametrize("ext,fmt,levels", [("png", "uint8", 255), ("png", "uint16", 65535),
                                            ("tif", "uint8", 255), ("tif", "uint16", 65535),
                                            ("dpx", "uint16", 65535)])
def test_integer_formats_scaled_to_unit(tmp_path, ext, fmt, levels):
    codes = np.arange(4 * 6 * 3).reshape(4, 6, 3) * 37 % (levels + 1)
    px = (codes / levels).astype(np.float32)
    plate = read_plate(write_image(tmp_path / f"p.{ext}", px, fmt=fmt))
    tol = 1.0 / 1023 if ext == "dpx" else 1e-6  # DPX stores 10 bits by default
    np.testing.assert_allclose(plate.pixels, px, atol=tol)
    assert not plate.is_float


def test_jpeg_reads_with_srgb_metadata(tmp_path):
    px = np.full((8, 8, 3), 0.5, np.float32)
    plate = read_plate(write_image(tmp_path / "p.jpg", px, fmt="uint8"))
    assert plate.colorspace  # OIIO tags JPEG as sRGB; plate_colorspace resolves it
    np.testing.assert_allclose(plate.pixels, 0.5, atol=2 / 255)


def test_reading_a_frame_takes_the_token_in_the_file_name(tmp_path):
    # a version folder named like a pattern (v###) is a folder, not the frame number
    folder = tmp_path / "v###"
    folder.mkdir()
    path = write_image(folder / "p.0007.exr", rng_pixels(4, 4, 3), channels=("R", "G", "B"))
    plate = read_plate(str(folder / "p.####.exr"), frame=7)
    assert plate.path == path
    assert describe_image(str(folder / "p.%04d.exr"), frame=7)["path"] == path


def test_describe_image(tmp_path):
    path = write_image(tmp_path / "d.exr", rng_pixels(6, 10, 4), channels=("R", "G", "B", "A"),
                       data_origin=(2, 3), display=(0, 0, 16, 16), tile=(8, 8),
                       attrs={"oiio:ColorSpace": "ACEScg"})
    info = describe_image(path)
    assert info["format"] == "openexr"
    assert info["channels"] == ["R", "G", "B", "A"]
    assert info["data_window"] == (2, 3, 10, 6) and info["display_window"] == (0, 0, 16, 16)
    assert info["colorspace"] in ("ACEScg", "lin_ap1_scene")  # OIIO 3 may store the interop id
    assert info["subimages"][0]["tile"] == (8, 8)
    assert info["subimages"][0]["channel_formats"] == ["half"] * 4


def test_deep_exr_is_refused(tmp_path):
    import OpenImageIO as oiio
    spec = oiio.ImageSpec(4, 4, 2, "float")
    spec.channelnames = ("A", "Z")
    spec.deep = True
    deep = oiio.DeepData()
    deep.init(spec)
    for pixel in range(16):
        deep.set_samples(pixel, 1)
    path = str(tmp_path / "deep.exr")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_deep_image(deep)
    out.close()
    with pytest.raises(PlateError, match="deep"):
        read_plate(path, "A,Z")


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_an_unassociated_alpha_is_not_multiplied_into_the_plate(tmp_path, ext):
    # a plate carrying a matte or a trimap in its alpha: read as stored, as Nuke's Read does
    import OpenImageIO as oiio
    codes = (np.arange(6 * 8 * 4).reshape(6, 8, 4) * 29 % 256).astype(np.uint8)
    codes[..., 3] = 64
    path = str(tmp_path / f"p.{ext}")
    spec = oiio.ImageSpec(8, 6, 4, "uint8")
    spec.attribute("oiio:UnassociatedAlpha", 1)
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_image(codes)
    out.close()
    plate = read_plate(path)
    np.testing.assert_allclose(plate.pixels, codes[..., :3] / 255, atol=1e-6)
    alpha = read_plate(path, "A")
    np.testing.assert_allclose(alpha.pixels, 64 / 255, atol=1e-6)


def test_a_stereo_files_parts_are_named_when_the_first_is_read(tmp_path, caplog):
    left, right = rng_pixels(6, 8, 3, seed=1), rng_pixels(6, 8, 3, seed=2)
    path = write_parts(tmp_path / "stereo.exr", [Part(left, ("R", "G", "B"), name="left"),
                                                 Part(right, ("R", "G", "B"), name="right")])
    with caplog.at_level("WARNING"):
        plate = read_plate(path)
    np.testing.assert_array_equal(plate.pixels, left)
    [message] = [r.getMessage() for r in caplog.records]
    assert "2 parts (left, right); the first, left, is read" in message


def test_a_stereo_sequence_says_which_part_once_a_shot(tmp_path):
    from nuke_hdmatt.shot.workflow import _warnings_to

    class Reporter:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

    reporter = Reporter()
    with _warnings_to(reporter):
        for f in (1, 2, 3):
            left, right = rng_pixels(6, 8, 3, seed=f), rng_pixels(6, 8, 3, seed=f + 9)
            read_plate(write_parts(tmp_path / f"stereo.{f:04d}.exr",
                                   [Part(left, ("R", "G", "B"), name="left"),
                                    Part(right, ("R", "G", "B"), name="right")]))
        read_plate(write_parts(tmp_path / "other.exr",  # other parts: a warning of its own
                               [Part(left, ("R", "G", "B"), name="a"),
                                Part(right, ("R", "G", "B"), name="b")]))
    assert len(reporter.lines) == 2, reporter.lines
    assert "stereo.0001.exr" in reporter.lines[0] and "(left, right)" in reporter.lines[0]
    assert "(a, b)" in reporter.lines[1]


def test_part_reads_the_named_or_numbered_part_and_names_the_parts_when_absent(tmp_path):
    left, right = rng_pixels(6, 8, 3, seed=1), rng_pixels(6, 8, 3, seed=2)
    path = write_parts(tmp_path / "stereo.exr", [Part(left, ("R", "G", "B"), name="left"),
                                                 Part(right, ("R", "G", "B"), name="right")])
    plate = read_plate(path, part="right")
    np.testing.assert_array_equal(plate.pixels, right)
    assert plate.subimage == 1
    np.testing.assert_array_equal(read_plate(path, part="1").pixels, right)
    np.testing.assert_array_equal(read_plate(path, part="0").pixels, left)
    with pytest.raises(ChannelError, match=r"no part 'centre'; the file has: \[left\] R, G, B; "
                                           r"\[right\] R, G, B"):
        read_plate(path, part="centre")
    with pytest.raises(ChannelError, match="channel.s. A not in part right"):
        read_plate(path, "A", part="right")


def test_part_takes_the_trimaps_part_of_that_name_or_its_only_part(tmp_path):
    from nuke_hdmatt.imaging import read_trimap
    codes = [np.full((6, 8, 1), v, np.float32) for v in (0.0, 1.0)]
    both = write_parts(tmp_path / "lr.exr", [Part(codes[0], ("Y",), name="left"),
                                             Part(codes[1], ("Y",), name="right")])
    assert read_trimap(both, part="right").values.min() == 1.0
    assert read_trimap(both, part="left").values.max() == 0.0
    mono = write_parts(tmp_path / "mono.exr", [Part(codes[1], ("Y",))])
    assert read_trimap(mono, part="right").values.min() == 1.0  # one trimap for every view
    other = write_parts(tmp_path / "LR.exr", [Part(codes[0], ("Y",), name="L"),
                                              Part(codes[1], ("Y",), name="R")])
    with pytest.raises(ChannelError, match=r"no part 'right' \(--part\) among its parts: "
                                           r"\[L\] Y; \[R\] Y"):
        read_trimap(other, part="right")   # its first part would be the other view's
