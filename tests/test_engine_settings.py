"""One inference-settings object: validated once, the CLI's choices and the Nuke call's argv
made from it (issue 18, item 2)."""

import math

import pytest

from nuke_hdmatt.engine.settings import PRECISIONS, PRIOR_CHOICES, InferenceSettings


@pytest.mark.parametrize("field, value, option", [
    ("patch", 100, "--patch"), ("patch", 2048, "--patch"), ("overlap", 200, "--overlap"),
    ("pool", 0, "--pool"), ("k", 31, "--k"), ("precision", "fp8", "--precision"),
    ("prior", "magic", "--prior"), ("detail", 1.5, "--detail"), ("detail", math.nan, "--detail"),
    ("patch", True, "--patch"), ("snap", -0.01, "--snap"), ("snap", 0.3, "--snap"),
    ("snap", math.nan, "--snap"), ("snap", True, "--snap"),
])
def test_out_of_range_settings_name_their_option(field, value, option):
    with pytest.raises(ValueError, match=option):
        InferenceSettings(**{field: value})


def test_settings_are_frozen_and_replace_validates_again():
    s = InferenceSettings()
    with pytest.raises(AttributeError):
        s.patch = 64                                   # type: ignore[misc]
    assert s.replace(patch=64, overlap=16).patch == 64
    with pytest.raises(ValueError, match="--overlap"):
        s.replace(patch=32)                            # the default overlap no longer fits
    assert InferenceSettings(prior="none").prior_mode == "cascade"
    assert InferenceSettings(prior="local").prior_mode == "local"


def test_the_command_line_offers_what_the_settings_accept_and_parses_their_argv_back():
    from nuke_hdmatt.cli import build_parser, engine_kwargs
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["matte"]
    opts = {a.dest: a for a in sub._actions}
    assert tuple(opts["prior"].choices) == PRIOR_CHOICES
    assert tuple(opts["precision"].choices) == PRECISIONS
    settings = InferenceSettings(patch=256, overlap=24, k=2, pool=12, precision="fp16",
                                 prior="global", detail=0.1)
    args = parser.parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", *settings.argv()])
    assert engine_kwargs(args)["settings"] == settings
    one_pass = settings.replace(flip=False)
    args = parser.parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr", *one_pass.argv()])
    assert engine_kwargs(args)["settings"] == one_pass
    for snap in (0.0, 0.05):
        args = parser.parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr",
                                  *settings.replace(snap=snap).argv()])
        assert engine_kwargs(args)["settings"].snap == snap
    with pytest.raises(ValueError, match="flip"):
        InferenceSettings(flip=1)
    bare = parser.parse_args(["matte", "p.exr", "t.exr", "-o", "a.exr"])
    assert engine_kwargs(bare) == {"settings": InferenceSettings()}
