"""Preflight reads the first frame before the engine loads; the run then uses that read."""

from __future__ import annotations

import pytest

from cli_fixtures import exr_sequence


def test_the_first_frame_is_read_once_by_preflight_and_the_run(tmp_path, monkeypatch):
    import torch
    torch.set_num_threads(1)
    import nuke_hdmatt.imaging as imaging
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.shot.matte import matte_shot, preflight
    from nuke_hdmatt.shot.plan import MatteJob, plan_frames
    from nuke_hdmatt.shot.progress import ProgressReporter

    plate, trimap = exr_sequence(tmp_path / "in", [1, 2], size=48)
    job = MatteJob(plate=plate, trimap=trimap, output=str(tmp_path / "out" / "a.####.exr"),
                   frames=[1, 2])
    reads: list[str] = []
    original = imaging.read_plate

    def counting(path, *args, **kwargs):
        reads.append(str(path))
        return original(path, *args, **kwargs)
    monkeypatch.setattr(imaging, "read_plate", counting)
    plan = plan_frames(job)
    preflight(job, plan)
    assert len(reads) == 1 and list(plan.prepared) == [1]
    result = matte_shot(job, Engine.load(patch=32, overlap=8), cache=None,
                        reporter=ProgressReporter(2, quiet=True), plan=plan)
    assert result.done == [1, 2] and not result.failed
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 2   # each plate once
    assert plan.prepared == {}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.0001.exr", "a.0002.exr"]


def test_an_output_differing_from_an_input_only_in_case_is_that_input(tmp_path, monkeypatch):
    """On a case-insensitive volume (macOS, an SMB share) -o PLATE.exr is plate.exr: the
    folder lists only plate.exr, and PLATE.exr stats as its inode."""
    import os

    from nuke_hdmatt.sequence import FrameSequence
    from nuke_hdmatt.shot import plan
    (tmp_path / "plate.exr").write_bytes(b"the plate")
    os.symlink(tmp_path / "plate.exr", tmp_path / "PLATE.exr")      # resolves as such a volume does
    real_listdir = os.listdir
    monkeypatch.setattr(plan.os, "listdir",
                        lambda p: [n for n in real_listdir(p) if n != "PLATE.exr"])
    out = FrameSequence(str(tmp_path / "PLATE.exr"))
    clash = plan.overwritten_input(out, [FrameSequence(str(tmp_path / "plate.exr"))], [None])
    assert clash is not None and clash[1].endswith("plate.exr")


def test_a_locked_output_frame_is_failed_up_front_and_never_replaced(tmp_path, monkeypatch):
    import os

    from nuke_hdmatt.errors import OutputError
    from nuke_hdmatt.shot.matte import preflight
    from nuke_hdmatt.shot.plan import MatteJob, plan_frames

    plate, trimap = exr_sequence(tmp_path / "in", [1, 2], size=48)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.0002.exr").write_bytes(b"approved")
    real = os.access        # chmod a-w, faked: as root every file is writable
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("a.0002.exr")
                        else real(p, mode))
    job = MatteJob(plate=plate, trimap=trimap, output=str(out / "a.####.exr"), frames=[1, 2])
    plan = plan_frames(job)
    preflight(job, plan)
    assert list(plan.missing) == [2] and "read-only" in plan.missing[2]
    still = MatteJob(plate=plate.replace("####", "0002"), trimap=trimap.replace("####", "0002"),
                     output=str(out / "a.0002.exr"))
    with pytest.raises(OutputError, match="read-only"):
        preflight(still, plan_frames(still))
    assert (out / "a.0002.exr").read_bytes() == b"approved"
    # every frame locked: refused before the engine loads (it loaded, and failed each frame)
    (out / "a.0001.exr").write_bytes(b"approved too")
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(out) + "/")
                        else real(p, mode))
    with pytest.raises(OutputError, match=r"none of the 2 frame\(s\) can be made \(frame 1: .*read-only"):
        preflight(job, plan_frames(job))
