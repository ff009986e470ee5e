"""The HDMatt node's foreground outputs in the ``nuke`` test double: the output knob, the
engine call it makes, and the gizmo's Copy wiring for each choice (real engine, 48x48)."""

from __future__ import annotations

import numpy as np

from nuke_double.fixtures import fake_nuke  # noqa: F401  (a pytest fixture, requested by name)
from test_nuke_node import plate_pixels, read_exr, render, shot  # noqa: F401  (shot: a pytest fixture)

CHOICES = ["alpha only", "alpha + foreground layer", "premultiplied foreground"]


def _choose(nuke, node, value):
    node["foreground_output"].setValue(value)
    nuke._fire_knob_changed(node, "foreground_output")


def test_output_choice_knob_and_wiring_follow_each_other(shot):
    nuke, node, *_ = shot
    assert node["foreground_output"].values() == CHOICES
    assert node["foreground_output"].value() == "alpha only"
    disabled = lambda: (node.node("copy_fg")["disable"].value(),
                        node.node("copy_premult")["disable"].value())
    assert disabled() == (True, True)
    _choose(nuke, node, CHOICES[1])
    assert disabled() == (False, True)
    _choose(nuke, node, CHOICES[2])
    assert disabled() == (True, False)

    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    argvs = []
    for choice in CHOICES[1:]:  # both foreground outputs: one engine call, layer and rgb
        _choose(nuke, node, choice)
        argvs.append(hdmatt_knobs.matte_job(node, {"plate": "p.####.exr", "trimap": "t.####.exr",
                                                  "matte": None}, [1, 2]).argv("hdmatt"))
    argv = argvs[0]
    assert argv == argvs[1]
    assert argv[argv.index("--foreground") + 1] == "fg" and "--premultiplied" in argv
    _choose(nuke, node, CHOICES[0])
    argv = hdmatt_knobs.matte_job(node, {"plate": "p.####.exr", "trimap": "t.####.exr",
                                        "matte": None}, [1, 2]).argv("hdmatt")
    assert "--foreground" not in argv and "--premultiplied" not in argv


def test_each_choice_renders_what_it_says(shot):
    nuke, node, _, _, tmp_path = shot
    _choose(nuke, node, CHOICES[2])
    assert node["generate"].execute() is None
    from nuke_hdmatt.nuke import knobs as hdmatt_knobs
    alpha_file = hdmatt_knobs.alpha_sequence(node).pattern.replace("%04d", "####")
    engine_file = read_exr(alpha_file.replace("####", "0001"))
    assert {"fg.R", "fg.G", "fg.B"} <= set(engine_file)
    plate = plate_pixels(1)
    rgb = lambda img: np.stack([img["R"], img["G"], img["B"]], -1)
    fg = lambda img: np.stack([img["fg.R"], img["fg.G"], img["fg.B"]], -1)

    render(nuke, node, tmp_path / "pre.####.exr", channels="all")
    out = read_exr(tmp_path / "pre.0001.exr")
    alpha = out["A"]
    np.testing.assert_allclose(rgb(out), alpha[..., None] * fg(engine_file), atol=2e-3)
    assert not np.allclose(rgb(out), alpha[..., None] * plate, atol=1e-2)  # not the plate's aI
    assert "fg.R" not in out

    _choose(nuke, node, CHOICES[1])  # no re-run: the premultiplied run wrote the layer too
    render(nuke, node, tmp_path / "layer.####.exr", channels="all")
    out = read_exr(tmp_path / "layer.0001.exr")
    np.testing.assert_allclose(rgb(out), plate, atol=1e-6)  # plate passes through raw
    assert np.array_equal(fg(out), fg(engine_file))

    _choose(nuke, node, CHOICES[0])
    render(nuke, node, tmp_path / "alpha.####.exr", channels="all")
    out = read_exr(tmp_path / "alpha.0001.exr")
    np.testing.assert_allclose(rgb(out), plate, atol=1e-6)
    assert "fg.R" not in out and np.array_equal(out["A"], alpha)


def test_the_choice_survives_a_saved_script(fake_nuke, tmp_path):
    """A gizmo's insides come from the .gizmo file when a script loads: the Copies follow the
    saved knob by expression, not by a value Python once set on them (lost on reload, and
    in every farm render)."""
    nuke = fake_nuke
    for choice, wanted in ((CHOICES[2], (True, False)), (CHOICES[1], (False, True))):
        nuke.scriptClear()
        script = tmp_path / "saved.nk"
        script.write_text(f'HDMatt {{\n inputs 0\n foreground_output "{choice}"\n name HDMatt1\n}}\n')
        nuke.scriptOpen(str(script))
        node = nuke.toNode("HDMatt1")
        assert node["foreground_output"].value() == choice
        assert (node.node("copy_fg")["disable"].value(),
                node.node("copy_premult")["disable"].value()) == wanted


def test_switching_from_alpha_only_to_a_foreground_is_stale_between_the_two_not(shot):
    nuke, node, *_ = shot
    from nuke_hdmatt.nuke import node as hdmatt_node
    assert node["generate"].execute() is None
    assert hdmatt_node.stale_reasons(node) == []
    _choose(nuke, node, CHOICES[1])
    assert hdmatt_node.stale_reasons(node) == ["settings"]  # the file has no colour yet
    assert "stale" in node["label"].value()
    assert node["generate"].execute() is None
    _choose(nuke, node, CHOICES[2])
    assert hdmatt_node.stale_reasons(node) == []
