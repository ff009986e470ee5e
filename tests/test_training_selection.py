"""Checkpoint choice by cross-validation over the validation images (issue 19, item 4)."""

import json

import pytest

from nuke_hdmatt.training.selection import choose_step, cross_validate, main


def _entry(step, sads):
    per = {}
    for name, sad in sads.items():
        for ts in ("trimap1", "trimap2"):
            m = {"sad": sad, "mse": sad / 100, "grad": sad, "conn": sad}
            per[f"{name}/{ts}"] = {"model": m, "prior": {k: v * 2 for k, v in m.items()}}
    return {"step": step, "per_image": per}


HISTORY = [_entry(0, {"A": 5.0, "B": 5.0, "C": 5.0}),
           _entry(100, {"A": 1.0, "B": 9.0, "C": 5.0}),     # lucky on A only
           _entry(200, {"A": 4.0, "B": 4.0, "C": 4.0})]


def test_each_fold_is_graded_by_a_step_chosen_without_it():
    res = cross_validate(HISTORY, [["A"], ["B"], ["C"]])
    by_fold = {f["graded_on"][0]: f for f in res["folds"]}
    assert by_fold["A"]["step"] == 200 and by_fold["A"]["chosen_on"] == ["B", "C"]
    # chosen on A and C, step 100 (lucky on A) looks best and grades B at 9
    assert by_fold["B"]["step"] == 100 and by_fold["C"]["step"] == 200
    assert res["cv"]["sad"] == pytest.approx((4 + 9 + 4) / 3)
    assert res["chosen_on_all"] == 200 and res["prior"]["sad"] == pytest.approx(8.0)


def test_the_optimistic_figure_differs_when_a_step_is_lucky_on_its_choosers():
    history = HISTORY[:2]
    res = cross_validate(history, [["A"], ["B", "C"]])
    # chosen on B,C -> step 0 grades A at 5; chosen on A -> step 100 grades B,C at 9 and 5
    assert res["cv"]["sad"] == pytest.approx((5 + 9 + 5) / 3)
    assert res["optimistic"]["sad"] < res["cv"]["sad"]
    assert choose_step(history, ["A"])["step"] == 100


def test_command_writes_json_and_refuses_a_history_without_per_image_results(tmp_path, capsys):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(HISTORY))
    assert main([str(path), "--out", str(tmp_path / "sel.json")]) == 0
    assert json.loads((tmp_path / "sel.json").read_text())["chosen_on_all"] == 200
    path.write_text(json.dumps([{"step": 1}]))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "selection: error:" in err[0] and "history.json" in err[0]


def test_the_command_says_what_is_wrong_with_folds_and_where_it_cannot_write(tmp_path, capsys):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(HISTORY))
    for args, needle in ((["--folds", "A/Z"], "--folds: Z not among the run's validation"),
                         (["--folds", "A,B,C"], "at least two images and two folds")):
        assert main([str(path), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    one = tmp_path / "one.json"
    one.write_text(json.dumps([_entry(0, {"A": 1.0})]))
    assert main([str(one)]) == 2 and "validated on A" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main([str(path), "--out", str(tmp_path / "f" / "sel.json")]) == 2
    assert "--out: cannot write" in capsys.readouterr().err
