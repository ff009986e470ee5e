"""Colour: config resolution, plate colour space, conversion checked against numpy maths."""

import dataclasses

import numpy as np
import PyOpenColorIO as OCIO
import pytest

from imaging_fixtures import write_image
from nuke_hdmatt.errors import ColorSpaceError
from nuke_hdmatt.imaging import (
    NETWORK_SPACE,
    from_scene_linear,
    plate_colorspace,
    read_plate,
    resolve_config,
    to_network_space,
    to_scene_linear,
)
from nuke_hdmatt.imaging.colour import network_space_name

# Conversion tolerance: OCIO's CPU path uses fast power approximations (~1e-5 error).
ATOL = 2e-4


def srgb_encode(linear):
    """IEC 61966-2-1 sRGB transfer function, written out independently of OCIO."""
    x = np.asarray(linear, dtype=np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0), 1 / 2.4) - 0.055)


def srgb_decode(encoded):
    x = np.asarray(encoded, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0) + 0.055) / 1.055) ** 2.4)


def rgb_to_xyz(primaries, white):
    xy = np.array(primaries + [white], dtype=np.float64)
    xyz = np.stack([xy[:, 0] / xy[:, 1], np.ones(4), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]], axis=1)
    scale = np.linalg.solve(xyz[:3].T, xyz[3])
    return xyz[:3].T * scale


def bradford(src_white, dst_white):
    m = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367],
                  [0.0389, -0.0685, 1.0296]])
    def w(xy):
        return np.array([xy[0] / xy[1], 1.0, (1 - xy[0] - xy[1]) / xy[1]])
    return np.linalg.inv(m) @ np.diag((m @ w(dst_white)) / (m @ w(src_white))) @ m


D65 = (0.3127, 0.3290)
ACES_WHITE = (0.32168, 0.33767)
REC709 = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)]
AP1 = [(0.713, 0.293), (0.165, 0.830), (0.128, 0.044)]


@pytest.fixture(scope="module")
def builtin():
    config, desc = resolve_config("ocio://cg-config-latest")
    return config


def ramp(n=64):
    rng = np.random.default_rng(0)
    return (rng.random((n // 8, 8, 3)) ** 2).astype(np.float32)


def test_linear_rec709_matches_srgb_formula(builtin):
    px = ramp()
    got = to_network_space(px, "Linear Rec.709 (sRGB)", builtin)
    np.testing.assert_allclose(got, srgb_encode(px), atol=ATOL)
    assert got.dtype == np.float32 and got.shape == px.shape


def test_acescg_plate_via_scene_linear_role(tmp_path, builtin):
    px = ramp() * 0.8
    plate = read_plate(write_image(tmp_path / "cg.exr", px, fmt="float"))
    space = plate_colorspace(plate, None, builtin)
    assert space == "ACEScg"  # the built-in config's scene_linear role
    ap1_to_709 = (np.linalg.inv(rgb_to_xyz(REC709, D65)) @ bradford(ACES_WHITE, D65)
                  @ rgb_to_xyz(AP1, ACES_WHITE))
    want = np.clip(srgb_encode(np.clip(px @ ap1_to_709.T, 0, None)), 0, 1)
    got = to_network_space(plate.pixels, space, builtin)
    np.testing.assert_allclose(got, want, atol=1e-3)  # CAT rounding between ACES docs


def test_hdr_nan_inf_treatment(builtin):
    px = np.array([[[4.0, -0.5, 0.25], [np.nan, 0.5, 0.5], [np.inf, -np.inf, 0.0]]],
                  dtype=np.float32)
    got = to_network_space(px, "lin_rec709_scene", builtin)
    assert np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1
    e = srgb_encode
    np.testing.assert_allclose(got[0, 0], [1.0, 0.0, e(0.25)], atol=ATOL)  # clip above 1, below 0
    np.testing.assert_allclose(got[0, 1], [0.0, e(0.5), e(0.5)], atol=ATOL)  # NaN -> 0, no spread
    np.testing.assert_allclose(got[0, 2], [1.0, 0.0, 0.0], atol=ATOL)       # +inf white, -inf 0
    assert np.isnan(px[0, 1, 0])  # input untouched
    # the linear-light conversions (foreground colour) keep the range, finite both ways
    lin = to_scene_linear(px, "ACEScg", builtin)           # the config's scene_linear
    np.testing.assert_array_equal(lin[0, 1:], [[0.0, 0.5, 0.5], [65504.0, 0.0, 0.0]])
    assert np.isfinite(to_scene_linear(px, "lin_rec709_scene", builtin)).all()
    back = from_scene_linear(np.array([[[np.inf, -np.inf, np.nan]]], np.float32),
                             "ACEScg", builtin)
    np.testing.assert_array_equal(back, [[[65504.0, -65504.0, 0.0]]])


def test_unknown_colorspace_suggests_names(builtin):
    with pytest.raises(ColorSpaceError) as err:
        to_network_space(ramp(), "ACEScgg", builtin)
    msg = str(err.value)
    assert "ACEScgg" in msg and "'ACEScg'" in msg and "could not be found" in msg


def test_explicit_and_metadata_and_fallbacks(tmp_path, builtin):
    exr = read_plate(write_image(tmp_path / "a.exr", ramp(),
                                 attrs={"oiio:ColorSpace": "lin_rec709_scene"}))
    assert plate_colorspace(exr, None, builtin) == "Linear Rec.709 (sRGB)"
    assert plate_colorspace(exr, "acescct", builtin) == "ACEScct"  # explicit wins, any case
    tif = read_plate(write_image(tmp_path / "a.tif", ramp(), fmt="uint16"))
    assert tif.colorspace is None
    assert plate_colorspace(tif, None, builtin) == NETWORK_SPACE
    png = read_plate(write_image(tmp_path / "a.png", ramp(), fmt="uint8"))
    assert plate_colorspace(png, None, builtin) == NETWORK_SPACE
    # OIIO 3 only writes interop ids, but files from older tools carry free-form names.
    bad = dataclasses.replace(read_plate(write_image(tmp_path / "b.exr", ramp())),
                              colorspace="CustomLog")
    with pytest.raises(ColorSpaceError, match="oiio:ColorSpace.*b.exr|b.exr.*oiio:ColorSpace"):
        plate_colorspace(bad, None, builtin)
    with pytest.raises(ColorSpaceError, match="did you mean"):
        plate_colorspace(exr, "Linear Rec709", builtin)


def test_legacy_linear_metadata(tmp_path, builtin):
    plate = read_plate(write_image(tmp_path / "old.exr", ramp()))
    legacy = dataclasses.replace(plate, colorspace="Linear")  # pre-interop OIIO name
    assert plate_colorspace(legacy, None, builtin) == "Linear Rec.709 (sRGB)"
    tagged = read_plate(write_image(tmp_path / "tag.exr", ramp(), attrs={"oiio:ColorSpace": "ACEScg"}))
    assert plate_colorspace(tagged, None, builtin) == "ACEScg"


def test_resolve_config_order(tmp_path, monkeypatch):
    monkeypatch.delenv("OCIO", raising=False)
    config, desc = resolve_config()
    assert desc.startswith("ocio://cg-config-latest")
    path = tmp_path / "studio.ocio"
    OCIO.Config.CreateFromFile("ocio://cg-config-latest").serialize(str(path))
    monkeypatch.setenv("OCIO", str(path))
    config, desc = resolve_config()
    assert desc.startswith(str(path))
    config, desc = resolve_config("ocio://studio-config-latest")  # explicit beats $OCIO
    assert desc.startswith("ocio://studio-config-latest")
    with pytest.raises(ColorSpaceError, match="not found"):
        resolve_config(str(tmp_path / "missing.ocio"))
    broken = tmp_path / "broken.ocio"
    broken.write_text("ocio_profile_version: 2\nroles: [\n")
    with pytest.raises(ColorSpaceError, match="broken.ocio"):
        resolve_config(str(broken))


def test_config_without_srgb_goes_through_builtin(builtin):
    config = OCIO.Config.CreateFromFile("ocio://cg-config-latest")
    config.removeColorSpace(NETWORK_SPACE)
    assert network_space_name(config) is None
    px = ramp()
    got = to_network_space(px, "Linear Rec.709 (sRGB)", config)
    np.testing.assert_allclose(got, srgb_encode(px), atol=ATOL)


def test_a_png_under_a_config_without_interop_names(tmp_path):
    """OpenImageIO names every PNG srgb_rec709_scene, tagged or not: under a config that
    knows sRGB by another name, that is the plate's space; under one with no sRGB at all,
    the error says which option fixes it."""
    def config_with(names):
        config = OCIO.Config.CreateRaw()
        for name in names:
            config.addColorSpace(OCIO.ColorSpace(name=name))
        config.setRole("scene_linear", names[0])
        return config
    png = read_plate(write_image(tmp_path / "a.png", ramp(), fmt="uint8"))
    assert png.colorspace == "srgb_rec709_scene"
    assert plate_colorspace(png, None, config_with(["linear", "sRGB - Texture"])) == \
        "sRGB - Texture"
    with pytest.raises(ColorSpaceError, match="--plate-colorspace"):
        plate_colorspace(png, None, config_with(["linear", "log"]))


def test_exposure_gain_fits_the_unknown_bands_peak_between_half_and_full_white(builtin):
    """The gain is read from the unknown pixels only, in linear light; a band peaking within
    [0.5, 1] of white keeps 1 (most display-referred plates convert exactly as before)."""
    from nuke_hdmatt.imaging import exposure_gain
    from nuke_hdmatt.imaging.colour import MAX_BRIGHTEN
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 0.9, (40, 60, 3)).astype(np.float32)
    band = np.zeros((40, 60), bool)
    band[:, 20:40] = True
    assert exposure_gain(px, "lin_rec709_scene", builtin, band) == 1.0
    px[:, 50:] = 30.0  # a highlight outside the band: not the network's business
    assert exposure_gain(px, "lin_rec709_scene", builtin, band) == 1.0
    px[:, 20:40] *= 5.0  # the band up to 4.5x white in linear Rec.709

    def peak(p):
        return np.percentile(to_scene_linear(p[band][None], "lin_rec709_scene", builtin).max(-1),
                             99.5)
    gain = exposure_gain(px, "lin_rec709_scene", builtin, band)
    assert gain == pytest.approx(1 / peak(px)) and 1 / 5 < gain < 1 / 4  # of scene_linear (ACEScg)
    assert exposure_gain(px, "lin_rec709_scene", builtin, np.zeros_like(band)) == 1.0
    # the same light in ACEScg: the gain is of the light, not of the encoding's numbers
    cg = from_scene_linear(to_scene_linear(px, "lin_rec709_scene", builtin), "ACEScg", builtin)
    assert abs(exposure_gain(cg, "ACEScg", builtin, band) - gain) < 0.02 * gain
    # a night plate: brightened until the band peaks at half of white, at most 8 stops
    night = px / 100
    assert exposure_gain(night, "lin_rec709_scene", builtin, band) == pytest.approx(0.5 / peak(night))
    assert exposure_gain(px * 1e-6, "lin_rec709_scene", builtin, band) == MAX_BRIGHTEN
    assert exposure_gain(px * 0, "lin_rec709_scene", builtin, band) == 1.0  # black: nothing to fit


def test_the_gain_is_exposure_in_linear_light(builtin):
    """``to_network_space(px, gain=g)`` is the plate g times darker in linear light, then the
    usual conversion; 1 is the usual conversion itself."""
    px = (ramp() * 6.0).astype(np.float32)
    for space in ("lin_rec709_scene", "ACEScg"):
        darker = to_network_space(px * np.float32(0.25), space, builtin)
        np.testing.assert_allclose(to_network_space(px, space, builtin, 0.25), darker, atol=1e-5)
        np.testing.assert_array_equal(to_network_space(px, space, builtin, 1.0),
                                      to_network_space(px, space, builtin))
    srgb = (ramp() * 0.9).astype(np.float32)  # an encoded plate: darkened in linear, not as numbers
    got = to_network_space(srgb, "sRGB Encoded Rec.709 (sRGB)", builtin, 0.5)
    np.testing.assert_allclose(got, srgb_encode(0.5 * srgb_decode(srgb)), atol=1e-4)


def test_an_exrs_chromaticities_name_its_linear_space(tmp_path, builtin):
    """An untagged EXR stating AP0 primaries is ACES2065-1, not the scene_linear role's
    ACEScg (its alpha moved by up to 0.17 read as ACEScg)."""
    import OpenImageIO as oiio
    for name, chroma in (("ACES2065-1", (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)),
                         ("Linear Rec.709 (sRGB)", (0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329)),
                         ("ACEScg", None), ("ACEScg", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))):
        path = str(tmp_path / "p.exr")
        spec = oiio.ImageSpec(4, 3, 3, "half")
        if chroma:
            spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), chroma)
        out = oiio.ImageOutput.create(path)
        assert out.open(path, spec) and out.write_image(ramp()[:3, :4])
        out.close()
        assert plate_colorspace(read_plate(path), None, builtin) == name, chroma


def test_a_film_scan_dpx_must_name_its_log_space(tmp_path, builtin):
    import OpenImageIO as oiio
    path = str(tmp_path / "scan.dpx")
    spec = oiio.ImageSpec(4, 3, 3, "uint16")
    spec.attribute("dpx:Transfer", "Printing density")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_image(np.full((3, 4, 3), 0.5, np.float32))
    out.close()
    plate = read_plate(path)
    with pytest.raises(ColorSpaceError, match="Printing density"):
        plate_colorspace(plate, None, builtin)
    assert plate_colorspace(plate, "ACEScct", builtin) == "ACEScct"     # named: read so
