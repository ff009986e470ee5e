"""Frame patterns and frame-range strings (nuke_hdmatt.sequence)."""

import pytest

from nuke_hdmatt.errors import UsageError
from nuke_hdmatt.sequence import (
    FrameCountError,
    FrameSequence,
    format_frames,
    frame_file,
    frames_on_disk,
    input_sequence,
    parse_frames,
)


@pytest.mark.parametrize("pattern, frame, expected", [
    ("/s/plate.####.exr", 1001, "/s/plate.1001.exr"),
    ("/s/plate.####.exr", 7, "/s/plate.0007.exr"),
    ("plate.##.exr", 7, "plate.07.exr"),
    ("plate.%04d.exr", 12, "plate.0012.exr"),
    ("plate.%d.exr", 12, "plate.12.exr"),
    ("plate.@.exr", 12, "plate.12.exr"),
    ("plate.@@@.exr", 5, "plate.005.exr"),
    ("/shot#1/plate.####.exr", 3, "/shot#1/plate.0003.exr"),  # folder hashes are not frames
    ("/s/plate.exr", 3, "/s/plate.exr"),
    # negative frames as printf (and Nuke, which reads #### as %04d) pad them: the sign counts
    ("plate.####.exr", -1, "plate.-001.exr"),
    ("plate.%04d.exr", -12, "plate.-012.exr"),
    ("plate.####.exr", -12345, "plate.-12345.exr"),
    ("plate.@.exr", -3, "plate.-3.exr"),
])
def test_pattern_expansion(pattern, frame, expected):
    assert FrameSequence(pattern).path(frame) == expected


def test_single_file_is_not_a_sequence_and_sequence_needs_a_frame():
    assert not FrameSequence("/a/b.exr").is_sequence
    assert FrameSequence("/a/b.exr").path(None) == "/a/b.exr"
    with pytest.raises(UsageError, match="--frames"):
        FrameSequence("/a/b.####.exr").path(None)


@pytest.mark.parametrize("text, expected", [
    ("1001", [1001]),
    ("1001-1004", [1001, 1002, 1003, 1004]),
    ("1001-1008x2", [1001, 1003, 1005, 1007]),
    ("1-7:3", [1, 4, 7]),
    ("1,5,10-12", [1, 5, 10, 11, 12]),
    ("3,1-3", [3, 1, 2]),
    (" 1, 2 ", [1, 2]),
    # spaces separate parts, as in Nuke's frame ranges: "1001 1005" was frame 10011005
    ("1001 1005", [1001, 1005]),
    ("1-3 7", [1, 2, 3, 7]),
    ("1001 - 1003", [1001, 1002, 1003]),
    ("1-5 x 2", [1, 3, 5]),
    ("-3 - -1", [-3, -2, -1]),
])
def test_parse_frames(text, expected):
    assert parse_frames(text) == expected


@pytest.mark.parametrize("bad", ["", "a-b", "10-1", "1-10x0", "1--", "1-5y2"])
def test_parse_frames_rejects_malformed(bad):
    with pytest.raises(UsageError) as info:
        parse_frames(bad)
    assert "--frames" in info.value.one_line()


def test_a_frame_count_past_sys_maxsize_is_refused_counted_not_expanded():
    # len() of such a range raises OverflowError: an internal error, not a --frames one
    with pytest.raises(FrameCountError) as info:
        parse_frames("1-99999999999999999999999,5-6")
    assert info.value.count == 99999999999999999999999 + 2
    assert "--frames" in info.value.one_line()


def test_format_frames_round_trip():
    assert format_frames([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert parse_frames(format_frames([5, 1, 2, 3])) == [1, 2, 3, 5]


def test_missing_frames_reported_and_disk_scan_respects_padding(tmp_path):
    seq = FrameSequence(str(tmp_path / "p.####.exr"))
    for f in (1, 2, 4):
        (tmp_path / f"p.{f:04d}.exr").write_bytes(b"x")
    (tmp_path / "p.03.exr").write_bytes(b"x")      # wrong padding: not frame 3
    (tmp_path / "q.0003.exr").write_bytes(b"x")    # other sequence
    assert seq.missing([1, 2, 3, 4]) == [3]
    assert frames_on_disk(seq) == [1, 2, 4]


def test_frame_file_leaves_stills_and_frameless_reads_alone():
    assert frame_file("shots/v###/a.####.exr", 5) == "shots/v###/a.0005.exr"
    assert frame_file("shots/v###/still.exr", 5) == "shots/v###/still.exr"
    assert frame_file("a.####.exr", None) == "a.####.exr"


def test_an_input_named_like_a_pattern_is_the_file_only_when_no_frame_is_on_disk(tmp_path):
    still = tmp_path / "logo@2x.png"
    assert input_sequence(still).is_sequence          # no such file: a pattern
    still.write_bytes(b"x")
    seq = input_sequence(still)
    assert not seq.is_sequence and seq.path(5) == str(still) and seq.path(None) == str(still)
    (tmp_path / "logo72x.png").write_bytes(b"x")      # frame 7 of the pattern: a sequence
    assert input_sequence(still).path(7) == str(tmp_path / "logo72x.png")
    assert FrameSequence(str(tmp_path / "a@b.png")).is_sequence   # outputs stay patterns


def test_negative_frames_on_disk_are_found_with_printf_padding(tmp_path):
    seq = FrameSequence(str(tmp_path / "p.####.exr"))
    for name in ("p.-002.exr", "p.-001.exr", "p.0000.exr", "p.0001.exr", "p.-0003.exr"):
        (tmp_path / name).write_bytes(b"x")    # -0003: another padding, not frame -3
    assert frames_on_disk(seq) == [-2, -1, 0, 1]
    assert seq.missing([-3, -2]) == [-3]
