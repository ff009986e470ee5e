"""Writing alphas: channel/metadata preservation, windows, formats, atomicity."""

import os

import numpy as np
import OpenImageIO as oiio
import pytest

from imaging_fixtures import Part, read_all, rng_pixels, write_image, write_parts
from nuke_hdmatt import ENGINE_VERSION
from nuke_hdmatt.errors import OutputError, UsageError
from nuke_hdmatt.imaging import COMPRESSIONS, read_hdmatt_metadata, read_plate, write_alpha, writing

# Half stores 11 significant bits: |error| <= 2**-12 for values in [0.5, 1], less below.
HALF_ATOL = 2.0 ** -12


def alpha_like(plate, seed=9):
    h, w = plate.pixels.shape[:2]
    return np.random.default_rng(seed).random((h, w)).astype(np.float32)


def aov_plate(tmp_path, **kw):
    rgb = rng_pixels(10, 14, 3, seed=1, scale=6.0)
    aov = rng_pixels(10, 14, 2, seed=2)
    px = np.concatenate([rgb, aov], axis=2)
    path = write_image(tmp_path / "plate.exr", px, channels=("R", "G", "B", "Z", "spec.R"),
                       channel_formats=("half", "half", "half", "float", "half"),
                       attrs={"nuke/node_hash": "b10cafe", "pipeline:shot": "ab_0010", "exposure": 1.5},
                       **kw)
    return path, px


def test_exr_rgba_keeps_every_channel_and_metadata(tmp_path):
    path, px = aov_plate(tmp_path, data_origin=(-3, -2), display=(0, 0, 10, 8), tile=(8, 8))
    plate = read_plate(path)
    alpha = alpha_like(plate)
    out = tmp_path / "out.exr"
    write_alpha(out, alpha, plate, metadata={"weights_id": "hdmatt-test", "weights_sha256": "ab" * 32,
                                             "params": {"patch": 320, "overlap": 32, "k": 3},
                                             "ocio_config": "ocio://cg-config-latest",
                                             "colorspace": "ACEScg"})
    [(spec, got)] = read_all(out)
    names = list(spec.channelnames)
    assert sorted(names) == sorted(["R", "G", "B", "Z", "spec.R", "A"])
    for i, name in enumerate(["R", "G", "B", "Z", "spec.R"]):
        np.testing.assert_array_equal(got[:, :, names.index(name)], px[:, :, i], err_msg=name)
    np.testing.assert_allclose(got[:, :, names.index("A")], alpha, atol=HALF_ATOL, rtol=0)
    formats = dict(zip(names, (str(f) for f in spec.channelformats)))
    assert formats["Z"] == "float" and formats["A"] == "half"
    assert (spec.x, spec.y, spec.width, spec.height) == (-3, -2, 14, 10)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (0, 0, 10, 8)
    assert spec.getattribute("nuke/node_hash") == "b10cafe"
    assert spec.getattribute("pipeline:shot") == "ab_0010"
    assert spec.getattribute("exposure") == pytest.approx(1.5)
    [(src_spec, _)] = read_all(path)
    src_attrs = {a.name: a.value for a in src_spec.extra_attribs if a.name != "compression"}
    out_attrs = {a.name: a.value for a in spec.extra_attribs}
    assert {k: out_attrs.get(k) for k in src_attrs} == src_attrs  # every attribute survives
    assert spec.tile_width == 8
    meta = read_hdmatt_metadata(out)
    assert meta["engine_version"] == ENGINE_VERSION
    assert meta["weights_sha256"] == "ab" * 32 and meta["weights_id"] == "hdmatt-test"
    assert meta["params"] == {"patch": 320, "overlap": 32, "k": 3}
    assert meta["colorspace"] == "ACEScg"


def test_named_layer_float_and_replacing_existing_alpha(tmp_path):
    rgba = rng_pixels(6, 8, 4, seed=3)
    path = write_image(tmp_path / "rgba.exr", rgba, channels=("R", "G", "B", "A"))
    plate = read_plate(path)
    alpha = alpha_like(plate)
    out = tmp_path / "layer.exr"
    write_alpha(out, alpha, plate, layer="hdmatt", half=False, compression="piz")
    [(spec, got)] = read_all(out)
    names = list(spec.channelnames)
    assert sorted(names) == ["A", "B", "G", "R", "hdmatt.alpha"]
    np.testing.assert_array_equal(got[:, :, names.index("hdmatt.alpha")], alpha)  # float: exact
    np.testing.assert_array_equal(got[:, :, names.index("A")], rgba[:, :, 3])     # old A kept
    assert spec.getattribute("compression") == "piz"
    out2 = tmp_path / "replaced.exr"
    write_alpha(out2, alpha, plate, layer="rgba")
    [(spec2, got2)] = read_all(out2)
    assert sorted(spec2.channelnames) == ["A", "B", "G", "R"]
    np.testing.assert_allclose(got2[:, :, list(spec2.channelnames).index("A")], alpha,
                               atol=HALF_ATOL, rtol=0)


def test_multipart_plate_all_parts_survive(tmp_path):
    beauty = rng_pixels(5, 7, 3, seed=4)
    aovs = rng_pixels(5, 7, 3, seed=5)
    path = write_parts(tmp_path / "mp.exr", [
        Part(beauty, ("R", "G", "B"), name="beauty", attrs={"who": "part0"}),
        Part(aovs, ("diffuse.R", "diffuse.G", "diffuse.B"), fmt="float", name="aovs")])
    plate = read_plate(path, "diffuse.R,diffuse.G,diffuse.B")
    alpha = alpha_like(plate)
    out = tmp_path / "mp_out.exr"
    write_alpha(out, alpha, plate, layer="hdmatt", metadata={"weights_id": "w"})
    (s0, p0), (s1, p1) = read_all(out)
    assert s0.getattribute("oiio:subimagename") == "beauty" and s0.getattribute("who") == "part0"
    np.testing.assert_array_equal(p0, beauty)
    names = list(s1.channelnames)
    for i, n in enumerate(["diffuse.R", "diffuse.G", "diffuse.B"]):
        np.testing.assert_array_equal(p1[:, :, names.index(n)], aovs[:, :, i])
    np.testing.assert_allclose(p1[:, :, names.index("hdmatt.alpha")], alpha, atol=HALF_ATOL, rtol=0)
    assert read_hdmatt_metadata(out)["weights_id"] == "w"


def test_integer_plate_to_exr_and_mipmapped_source(tmp_path):
    png = read_plate(write_image(tmp_path / "p.png", rng_pixels(8, 8, 3), fmt="uint8"))
    write_alpha(tmp_path / "from_png.exr", alpha_like(png), png)
    [(spec, got)] = read_all(tmp_path / "from_png.exr")
    assert all(str(f) == "half" for f in (spec.channelformats or [spec.format]))
    np.testing.assert_allclose(got[:, :, :3], png.pixels, atol=HALF_ATOL, rtol=0)
    # A MIP-mapped tiled texture as plate: the output is a plain single-level image.
    buf = oiio.ImageBuf(oiio.ImageSpec(32, 32, 3, "half"))
    oiio.ImageBufAlgo.fill(buf, (0.25, 0.5, 0.75))
    assert oiio.ImageBufAlgo.make_texture(oiio.MakeTxTexture, buf, str(tmp_path / "tex.exr"),
                                          oiio.ImageSpec())
    tex = read_plate(tmp_path / "tex.exr")
    write_alpha(tmp_path / "from_tex.exr", alpha_like(tex), tex)
    inp = oiio.ImageInput.open(str(tmp_path / "from_tex.exr"))
    assert inp.seek_subimage(0, 0) and not inp.seek_subimage(0, 1)
    inp.close()
    [(spec, got)] = read_all(tmp_path / "from_tex.exr")
    np.testing.assert_array_equal(got[0, 0, :3], [0.25, 0.5, 0.75])


def _uint_channel(path, name):
    inp = oiio.ImageInput.open(str(path))
    c = list(inp.spec().channelnames).index(name)
    fmt = (inp.spec().channelformats or [inp.spec().format] * (c + 1))[c]
    values = np.asarray(inp.read_image(0, 0, c, c + 1, oiio.UINT))[..., 0]
    inp.close()
    return str(fmt), values


def test_an_exrs_object_id_channel_stays_unsigned_and_exact(tmp_path, caplog):
    """A renderer's UINT id channel was read normalised (id / (2**32 - 1)) and stored as half:
    every id became 0 in the output."""
    spec = oiio.ImageSpec(6, 2, 4, oiio.UINT)
    spec.channelnames = ("R", "G", "B", "id")
    spec.channelformats = (oiio.TypeDesc("half"),) * 3 + (oiio.TypeDesc("uint"),)
    ids = np.array([[0, 1, 7, 1234, 70000, 2**24 - 1], [2, 3, 5, 8, 13, 21]], np.uint32)
    buf = np.zeros((2, 6, 4), np.uint32)   # a native write: the ids exactly as a renderer's
    buf[..., :3] = 2**31
    buf[..., 3] = ids
    out = oiio.ImageOutput.create(str(tmp_path / "ids.exr"))
    assert out.open(str(tmp_path / "ids.exr"), spec) and out.write_image(buf)
    out.close()
    plate = read_plate(tmp_path / "ids.exr")
    write_alpha(tmp_path / "out.exr", alpha_like(plate), plate)
    fmt, got = _uint_channel(tmp_path / "out.exr", "id")
    assert fmt == "uint" and np.array_equal(got, ids)
    assert not caplog.records
    buf[0, 0, 3] = 2**24 + 1  # beyond float32's integers: said, not silent
    out = oiio.ImageOutput.create(str(tmp_path / "big.exr"))
    assert out.open(str(tmp_path / "big.exr"), spec) and out.write_image(buf)
    out.close()
    plate = read_plate(tmp_path / "big.exr")
    write_alpha(tmp_path / "out_big.exr", alpha_like(plate), plate)
    assert any("channel id holds values above 2**24" in r.getMessage() for r in caplog.records)


def test_a_part_of_ids_alone_stays_unsigned_and_a_32_bit_tiffs_colours_become_half(tmp_path,
                                                                                    caplog):
    ids = np.array([[0, 1, 7, 1234, 70000, 2**24 - 1]], np.uint32)
    rgb = rng_pixels(1, 6, 3, seed=3)
    path = str(tmp_path / "parts.exr")
    specs = [oiio.ImageSpec(6, 1, 3, oiio.HALF), oiio.ImageSpec(6, 1, 1, oiio.UINT)]
    specs[0].channelnames, specs[1].channelnames = ("R", "G", "B"), ("id",)
    specs[0].attribute("oiio:subimagename", "rgba")
    specs[1].attribute("oiio:subimagename", "ids")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, tuple(specs)) and out.write_image(rgb)
    assert out.open(path, specs[1], "AppendSubimage") and out.write_image(ids[..., None])
    out.close()
    plate = read_plate(path)
    write_alpha(tmp_path / "out.exr", alpha_like(plate), plate)
    inp = oiio.ImageInput.open(str(tmp_path / "out.exr"))
    assert inp.seek_subimage(1, 0) and str(inp.spec().format) == "uint"
    got = np.asarray(inp.read_image(1, 0, 0, 1, oiio.UINT))[..., 0]
    inp.close()
    assert np.array_equal(got, ids)
    # a 32-bit integer TIFF plate: colours (2**31 is 0.5), written as half, no id warning
    tif = str(tmp_path / "p.tif")
    out = oiio.ImageOutput.create(tif)
    assert out.open(tif, oiio.ImageSpec(6, 1, 3, oiio.UINT))
    assert out.write_image(np.full((1, 6, 3), 2**31, np.uint32))
    out.close()
    plate = read_plate(tif)
    write_alpha(tmp_path / "from_tif.exr", alpha_like(plate), plate)
    [(spec, px)] = read_all(tmp_path / "from_tif.exr")
    assert all(str(f) == "half" for f in (spec.channelformats or [spec.format]))
    np.testing.assert_allclose(px[..., :3], 0.5, atol=HALF_ATOL)
    assert not any("2**24" in r.getMessage() for r in caplog.records)


def test_no_plate_writes_alpha_alone(tmp_path):
    alpha = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    write_alpha(tmp_path / "a.exr", alpha, None)
    [(spec, got)] = read_all(tmp_path / "a.exr")
    assert list(spec.channelnames) == ["A"]
    np.testing.assert_allclose(got[:, :, 0], alpha, atol=HALF_ATOL, rtol=0)


@pytest.mark.parametrize("ext,bits", [("png", 8), ("png", 16), ("tif", 8), ("tif", 16)])
def test_png_tiff_single_channel_alpha(tmp_path, ext, bits):
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(6, 8, 3)))
    alpha = alpha_like(plate)
    out = tmp_path / f"a.{ext}"
    write_alpha(out, alpha, plate, bit_depth=bits, metadata={"weights_id": "w"})
    [(spec, got)] = read_all(out)
    assert spec.nchannels == 1
    assert str(spec.format) == {8: "uint8", 16: "uint16"}[bits]
    levels = 2 ** bits - 1
    np.testing.assert_allclose(got[:, :, 0], np.round(alpha * levels) / levels, atol=1e-6)


def test_png_alpha_placed_in_display_window(tmp_path):
    plate = read_plate(write_image(tmp_path / "o.exr", rng_pixels(4, 6, 3), data_origin=(-1, 2),
                                   display=(0, 0, 5, 5)))
    alpha = np.ones((4, 6), np.float32)
    write_alpha(tmp_path / "o.png", alpha, plate)
    [(spec, got)] = read_all(tmp_path / "o.png")
    assert (spec.width, spec.height) == (5, 5)
    want = np.zeros((5, 5), np.float32)
    want[2:5, 0:5] = 1.0  # rows 2..5 of the data window lie in the display; x -1 dropped
    np.testing.assert_array_equal(got[:, :, 0], want)


@pytest.mark.parametrize("bad", ["zipp", "lzma", "dwaa:fast", "piz:3"])
def test_unknown_compression_is_an_error(tmp_path, bad):
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(4, 4, 3)))
    with pytest.raises(UsageError, match="compression"):
        write_alpha(tmp_path / "o.exr", alpha_like(plate), plate, compression=bad)
    assert not os.path.exists(tmp_path / "o.exr")


@pytest.mark.parametrize("name", COMPRESSIONS + ("dwaa:45", "zip:9"))
def test_every_known_compression_is_written(tmp_path, name):
    alpha = np.full((16, 16), 0.5, np.float32)
    write_alpha(tmp_path / "c.exr", alpha, None, compression=name)
    [(spec, got)] = read_all(tmp_path / "c.exr")
    assert spec.getattribute("compression") == name.split(":")[0]
    np.testing.assert_array_equal(got[:, :, 0], alpha)  # 0.5 survives every codec exactly


def test_bad_arguments(tmp_path):
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(4, 4, 3)))
    with pytest.raises(UsageError, match="extension"):
        write_alpha(tmp_path / "o.jpg", alpha_like(plate), plate)
    with pytest.raises(UsageError, match="bit depth"):
        write_alpha(tmp_path / "o.png", alpha_like(plate), plate, bit_depth=12)
    with pytest.raises(OutputError, match="3x4.*4x4|data window"):
        write_alpha(tmp_path / "o.exr", np.zeros((4, 3), np.float32), plate)
    with pytest.raises(OutputError, match="does not exist"):
        write_alpha(tmp_path / "nowhere" / "o.exr", alpha_like(plate), plate)
    with pytest.raises(OutputError, match="NaN"):
        write_alpha(tmp_path / "o.exr", np.full((4, 4), np.nan, np.float32), plate)


def _snapshot(folder):
    return sorted(os.listdir(folder))


def _existing_output(tmp_path):
    """A plate and an earlier output written from it, with the folder listing and bytes."""
    plate = read_plate(write_image(tmp_path / "p.exr", rng_pixels(4, 4, 3)))
    out = tmp_path / "out.exr"
    write_alpha(out, np.zeros((4, 4), np.float32), plate)
    return plate, out, out.read_bytes(), _snapshot(tmp_path)


def test_failed_rename_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    plate, out, before, listing = _existing_output(tmp_path)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(writing.os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left"):
        write_alpha(out, np.ones((4, 4), np.float32), plate)
    assert out.read_bytes() == before
    assert _snapshot(tmp_path) == listing


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    plate, out, before, listing = _existing_output(tmp_path)
    real_write = writing._write_image

    def write_then_interrupt(*args):
        real_write(*args)  # the temporary file is fully written ...
        raise KeyboardInterrupt  # ... then the user hits Ctrl-C before the rename
    monkeypatch.setattr(writing, "_write_image", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_alpha(out, np.ones((4, 4), np.float32), plate)
    assert out.read_bytes() == before
    assert _snapshot(tmp_path) == listing


def test_overwriting_the_plate_itself_is_safe(tmp_path):
    path, px = aov_plate(tmp_path)
    plate = read_plate(path)
    alpha = alpha_like(plate)
    write_alpha(path, alpha, plate)
    [(spec, got)] = read_all(path)
    names = list(spec.channelnames)
    np.testing.assert_array_equal(got[:, :, names.index("Z")], px[:, :, 3])
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


@pytest.mark.parametrize("config, space", [("ocio://cg-config-latest", "ACEScg"),
                                           ("ocio://studio-config-latest", "ARRI LogC4")])
def test_the_output_names_the_space_the_run_read_the_plate_in(tmp_path, config, space):
    """The plate's copied colorInteropID was written over the run's oiio:ColorSpace (a tag
    --plate-colorspace had corrected came back); a space OpenImageIO has no id for was
    written untagged, and read back as the config's scene_linear."""
    from nuke_hdmatt.imaging.colour import plate_colorspace, resolve_config

    path = str(tmp_path / "tagged.exr")
    spec = oiio.ImageSpec(4, 3, 3, oiio.HALF)
    spec.attribute("oiio:ColorSpace", "lin_rec709_scene")  # OpenImageIO adds the interop id
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_image(rng_pixels(3, 4, 3))
    out.close()
    plate = read_plate(path)
    assert plate.spec.getattribute("colorInteropID") == "lin_rec709_scene"
    write_alpha(tmp_path / "out.exr", alpha_like(plate), plate, metadata={"colorspace": space},
                channels={"fg.R": alpha_like(plate)})
    ocio, _ = resolve_config(config)
    assert plate_colorspace(read_plate(tmp_path / "out.exr"), None, ocio) == space


def test_colour_channels_beyond_halfs_range_or_over_float_channels_are_float(tmp_path):
    """A foreground over a CG sun (1e5) was stored as half, and read back as inf; a
    premultiplied R over a float plate's R lost the plate's precision."""
    px = rng_pixels(4, 5, 3, seed=4)
    px[0, 0] = 1e5
    path = write_image(tmp_path / "float.exr", px, fmt="float")
    plate = read_plate(path)
    fg = {f"fg.{c}": plate.pixels[..., i] for i, c in enumerate("RGB")}
    premultiplied = {c: plate.pixels[..., i] * 0.5 for i, c in enumerate("RGB")}
    write_alpha(tmp_path / "out.exr", alpha_like(plate), plate, channels={**fg, **premultiplied})
    [(spec, got)] = read_all(tmp_path / "out.exr")
    names = list(spec.channelnames)
    formats = dict(zip(names, (str(f) for f in spec.channelformats)))
    assert formats == {"R": "float", "G": "float", "B": "float", "A": "half",
                       "fg.R": "float", "fg.G": "float", "fg.B": "float"}
    assert np.isfinite(got).all() and got[0, 0, names.index("fg.R")] == 1e5
    np.testing.assert_array_equal(got[..., names.index("R")], px[..., 0] * 0.5)
    # within half's range over a half plate: half, as the alpha
    half_plate = read_plate(write_image(tmp_path / "half.exr", rng_pixels(4, 5, 3)))
    write_alpha(tmp_path / "half_out.exr", alpha_like(half_plate), half_plate,
                channels={"fg.R": half_plate.pixels[..., 0]})
    [(spec, _)] = read_all(tmp_path / "half_out.exr")
    assert {str(f) for f in (spec.channelformats or [spec.format])} == {"half"}


def test_alpha_only_keeps_the_plates_windows_and_attributes_not_its_channels(tmp_path):
    """A Nuke comp copies the alpha onto its own plate: every alpha frame held a copy of
    the float plate (every part of a stereo file)."""
    left = Part(rng_pixels(6, 8, 3), ("R", "G", "B"), fmt="float", data_origin=(-2, -1),
                display=(0, 0, 5, 4), name="left", attrs={"pipeline:shot": "ab_0010"})
    right = Part(rng_pixels(6, 8, 3, seed=2), ("R", "G", "B"), fmt="float",
                 data_origin=(-2, -1), display=(0, 0, 5, 4), name="right")
    path = write_parts(tmp_path / "stereo.exr", [left, right])
    plate = read_plate(path, part="right")
    alpha = alpha_like(plate)
    write_alpha(tmp_path / "out.exr", alpha, plate, plate_channels=False,
                channels={"fg.R": plate.pixels[..., 0]}, metadata={"colorspace": "ACEScg"})
    [(spec, got)] = read_all(tmp_path / "out.exr")
    assert list(spec.channelnames) == ["A", "fg.R"]
    assert (spec.x, spec.y, spec.width, spec.height) == (-2, -1, 8, 6)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (0, 0, 5, 4)
    np.testing.assert_allclose(got[..., 0], alpha, atol=HALF_ATOL, rtol=0)
    assert read_hdmatt_metadata(tmp_path / "out.exr")["colorspace"] == "ACEScg"
    assert os.path.getsize(tmp_path / "out.exr") < os.path.getsize(path)
