"""``hdmatt eval`` on a tiny dataset written to disk: PyMatting closed-form and a fake
method whose scores are computed by hand."""

import numpy as np
import pytest

from nuke_hdmatt import evaluation
from nuke_hdmatt.atomic import write_png_atomic


@pytest.fixture
def dataset(tmp_path):
    """Two 40x48 images: a soft vertical edge between two colours, 8-bit PNGs."""
    root = tmp_path / "ds"
    x = np.linspace(0, 1, 48, dtype=np.float32)
    for i, (lo, hi) in enumerate([(0.3, 0.6), (0.4, 0.8)]):
        name = f"GT{i + 1:02d}"
        alpha = np.tile(np.clip((x - lo) / (hi - lo), 0, 1), (40, 1))
        alpha = np.round(alpha * 255) / 255
        fg = np.array([0.9, 0.6, 0.1], np.float32)
        bg = np.array([0.1, 0.2, 0.7], np.float32)
        image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        write_png_atomic(root / "image" / f"{name}.png", image)
        write_png_atomic(root / "alpha" / f"{name}.png", alpha)
        for ts, pad in (("trimap1", 2), ("trimap2", 6)):
            tri = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5))
            cols = np.nonzero(tri[0] == 0.5)[0]
            tri[:, max(cols[0] - pad, 0):cols[-1] + pad + 1] = 0.5
            write_png_atomic(root / ts / f"{name}.png", tri)
    return root


def test_evaluate_scores_methods_on_every_case(dataset):
    def half(image, trimap):
        return np.full(trimap.shape, 0.5, np.float32)

    results = evaluation.evaluate(dataset, {"half": half, "cf": evaluation.peer_methods()["cf"]},
                                  trimap_sets=("trimap1", "trimap2"))
    assert len(results.rows) == 2 * 2 * 2
    # By hand: SAD of a constant 0.5 = sum over the unknown band of |0.5 - gt| / 1000.
    _, tri, gt = evaluation.load_case(dataset, "GT01", "trimap2")
    row = next(r for r in results.rows
               if (r.method, r.image, r.trimap_set) == ("half", "GT01", "trimap2"))
    u = tri == 0.5
    assert row.sad == pytest.approx(np.abs(0.5 - gt[u]).sum() / 1000, rel=1e-6)
    assert row.mse == pytest.approx(((0.5 - gt[u]) ** 2).mean(), rel=1e-6)
    means = results.means()
    assert means[("cf", "trimap1")]["n"] == 2
    # A two-colour soft edge is exactly the closed-form model: near-perfect.
    for ts in ("trimap1", "trimap2"):
        assert means[("cf", ts)]["sad"] < 0.1 * means[("half", ts)]["sad"]
    table = evaluation.format_table(results)
    assert "| GT01 | half |" in table and "### mean per method" in table
    assert "MSE x1e-3" in table


def test_cli_writes_the_table(dataset, tmp_path, capsys):
    out = tmp_path / "table.md"
    rc = evaluation.main([str(dataset), "--methods", "cf", "--trimaps", "trimap1",
                          "--images", "GT02", "--out", str(out), "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    assert "| GT02 | cf |" in printed and "GT01" not in printed


@pytest.mark.parametrize("argv, needle", [
    (["{missing}"], "dataset folder not found"),
    (["{ds}", "--methods", "cf,magic"], "unknown method 'magic'"),
    (["{ds}", "--images", "GT99", "--methods", "cf"], "GT99.png"),
    (["{ds}", "--trimaps", "trimap3"], "trimap3"),
    (["{ds}", "--methods", "D=/nope/d.safetensors"], "/nope/d.safetensors"),
    (["{ds}", "--methods", "cf", "--trimaps", "trimap1", "--images", "GT01",
      "--out", "/proc/hdmatt-no/t.md"], "/proc/hdmatt-no/t.md"),
    (["{ds}", "--device", "bogus"], "--device"),
    (["{ds}", "--patch", "12"], "--patch"),
    (["{ds}", "--methods", "cf", "--out", "{ds}/image/GT01.png"], "would overwrite"),
    (["{ds}", "--methods", "cf", "--out", "{ds}"], "is a folder"),
])
def test_cli_bad_input_is_one_line(dataset, tmp_path, capsys, argv, needle):
    argv = [a.format(ds=dataset, missing=tmp_path / "nope") for a in argv]
    assert evaluation.main(argv + ["-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and err.startswith("hdmatt: error:")


def test_failed_run_keeps_the_previous_table(dataset, tmp_path):
    out = tmp_path / "table.md"
    out.write_text("previous\n")
    assert evaluation.main([str(dataset), "--methods", "cf", "--images", "GT01,GT99",
                            "--out", str(out), "-q"]) == 2
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_knn_without_pymatting_is_a_one_line_error_and_not_in_the_default(dataset, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "_pymatting_available", lambda: False)
    assert evaluation.main([str(dataset), "--methods", "knn", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PyMatting" in err and err.startswith("hdmatt: error:")
    seen = []
    monkeypatch.setattr(evaluation, "evaluate", lambda ds, methods, *a, **k: seen.append(list(methods)) or
                        evaluation.EvalResults())
    evaluation.main([str(dataset), "-q"])
    assert seen == [["hdmatt", "cf"]]


def test_out_that_is_a_dataset_file_by_another_name_is_refused_and_the_file_kept(dataset,
                                                                                tmp_path, capsys):
    image = dataset / "trimap2" / "GT02.png"
    before = image.read_bytes()
    (tmp_path / "link.png").symlink_to(image)
    (tmp_path / "hard.png").hardlink_to(image)
    for out in ("link.png", "hard.png"):
        assert evaluation.main([str(dataset), "--methods", "cf", "--out",
                                str(tmp_path / out), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hdmatt: error: --out") and "GT02.png" in err, err
    assert image.read_bytes() == before


@pytest.mark.parametrize("role", ["trimap2", "alpha"])
def test_a_case_of_the_wrong_size_stops_the_run_before_any_method_and_is_named(dataset, role):
    from nuke_hdmatt.errors import TrimapError

    write_png_atomic(dataset / role / "GT02.png", np.zeros((40, 40), np.float32))
    calls = []

    def method(image, trimap):
        calls.append(1)
        return trimap

    with pytest.raises(TrimapError, match="size 40x40 differs") as caught:
        evaluation.evaluate(dataset, {"m": method}, trimap_sets=("trimap1", "trimap2"))
    assert caught.value.path == str(dataset / role / "GT02.png")
    assert calls == []  # GT01's cases were not computed first, then thrown away


def test_a_truncated_png_is_one_line_with_the_reason(dataset, capfd):
    image = dataset / "image" / "GT02.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])
    assert evaluation.main([str(dataset), "--methods", "cf", "-q"]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GT02.png" in err and "truncated or corrupt" in err, err
