"""The cascade's predicted per-pixel step (engine/detail.py) and its file beside the weights."""

import json

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine import detail
from nuke_hdmatt.engine.detail import EXTRA_FEATURES, FEATURES, DetailModel, features
from nuke_hdmatt.engine.weights import detail_model_path, load_detail_model
from nuke_hdmatt.errors import WeightsError

N = len(FEATURES)


def _frame(h=90, w=70, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3), dtype=np.float32)
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:10] = 0.0
    trimap[-10:] = 1.0
    coarse = np.clip(np.linspace(0, 1, h)[:, None] + 0 * rng.random((h, w)), 0, 1).astype(np.float32)
    full = np.clip(coarse + 0.3 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    return image, trimap, coarse, full


def _model(weights=None, bias=0.0, hidden=0, seed=0):
    rng = np.random.default_rng(seed)
    if hidden:
        layers = [(rng.standard_normal((hidden, N)).astype(np.float32), np.zeros(hidden, np.float32)),
                  (rng.standard_normal((1, hidden)).astype(np.float32), np.array([bias], np.float32))]
    else:
        w = np.zeros((1, N), np.float32) if weights is None else np.asarray([weights], np.float32)
        layers = [(w, np.array([bias], np.float32))]
    return DetailModel(np.zeros(N, np.float32), np.ones(N, np.float32), layers)


def test_a_constant_logit_is_the_fixed_step():
    image, trimap, coarse, full = _frame()
    step = 0.25
    got = _model(bias=float(np.log(step / (1 - step)))).blend(image, trimap, coarse, full)
    unknown = trimap == 0.5
    want = np.where(unknown, coarse + step * (full - coarse), trimap)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.array_equal(got[~unknown], trimap[~unknown])


def test_the_step_follows_the_features():
    """Weight on |full - coarse|: where the pass moves far the model takes it, where it moves
    little it keeps the coarse alpha."""
    image, trimap, coarse, full = _frame()
    w = np.zeros(N, np.float32)
    w[FEATURES.index("abs_d")] = 200.0
    got = _model(weights=w, bias=-20.0).blend(image, trimap, coarse, full)
    unknown = trimap == 0.5
    far = unknown & (np.abs(full - coarse) > 0.2)
    near = unknown & (np.abs(full - coarse) < 0.05)
    assert far.sum() > 100 and near.sum() > 100
    np.testing.assert_allclose(got[far], full[far], atol=1e-4)
    np.testing.assert_allclose(got[near], coarse[near], atol=1e-4)


def _whole_frame_blend(model, image, trimap, coarse, full):
    """The step model's alpha computed on the whole frame at once (no tiles)."""
    feats = detail.features(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(trimap),
                            torch.from_numpy(coarse), torch.from_numpy(full), model.names)
    unknown = trimap == 0.5
    w = torch.sigmoid(model.logits(feats.permute(1, 2, 0)[torch.from_numpy(unknown)])[:, 0]).numpy()
    want = trimap.copy()
    want[unknown] = np.clip(coarse[unknown] + w * (full - coarse)[unknown], 0, 1)
    return want


def test_tiles_give_the_whole_frame_answer(monkeypatch):
    image, trimap, coarse, full = _frame(150, 60, seed=2)
    model = _model(hidden=6, seed=3)
    whole = model.blend(image, trimap, coarse, full)
    np.testing.assert_allclose(whole, _whole_frame_blend(model, image, trimap, coarse, full), atol=1e-6)
    monkeypatch.setattr(detail, "TILE", 16)     # tiles smaller than the largest window
    np.testing.assert_allclose(model.blend(image, trimap, coarse, full), whole, atol=1e-6)
    monkeypatch.setattr(detail, "ROWS", 7)      # the perceptron in runs of a few pixels
    np.testing.assert_allclose(model.blend(image, trimap, coarse, full), whole, atol=1e-6)
    # a thin diagonal band and a speck: each tile is cut to its unknown pixels' box
    trimap = np.where(np.arange(60)[None, :] > np.arange(150)[:, None] * 0.4, 1.0, 0.0).astype(np.float32)
    band = np.abs(np.arange(60)[None, :] - np.arange(150)[:, None] * 0.4) < 2
    trimap[band] = 0.5
    trimap[140, 5] = 0.5
    want = _whole_frame_blend(model, image, trimap, coarse, full)
    for tile in (16, 64, 768):
        monkeypatch.setattr(detail, "TILE", tile)
        np.testing.assert_allclose(model.blend(image, trimap, coarse, full), want, atol=1e-6)


def _named_model(names, hidden=6, seed=4):
    rng = np.random.default_rng(seed)
    n = len(names)
    layers = [(rng.standard_normal((hidden, n)).astype(np.float32), np.zeros(hidden, np.float32)),
              (rng.standard_normal((1, hidden)).astype(np.float32), np.zeros(1, np.float32))]
    return DetailModel(np.full(n, 0.1, np.float32), np.full(n, 0.5, np.float32), layers,
                       names=tuple(names))


def test_a_model_naming_the_extra_features_reads_them_and_tiles_still_agree(monkeypatch):
    image, trimap, coarse, full = _frame(150, 60, seed=2)
    names = FEATURES + EXTRA_FEATURES
    model = _named_model(names)
    again = DetailModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.names == names
    whole = _whole_frame_blend(model, image, trimap, coarse, full)
    monkeypatch.setattr(detail, "TILE", 16)     # tiles smaller than the largest window
    np.testing.assert_allclose(model.blend(image, trimap, coarse, full), whole, atol=1e-5)
    # the extra features move the answer: the same first layer without them differs
    base = _named_model(FEATURES)
    base.layers = [(model.layers[0][0][:, :N], model.layers[0][1]), model.layers[1]]
    base.mean, base.std = model.mean[:N], model.std[:N]
    assert np.abs(base.blend(image, trimap, coarse, full) - whole).max() > 0.01
    # a subset in any order reads exactly those measurements
    t = [torch.from_numpy(a) for a in (image.transpose(2, 0, 1).copy(), trimap, coarse, full)]
    every = detail.features(*t, names)
    pick = ("plate_rgb_texture", "d", "region_coarse")
    torch.testing.assert_close(detail.features(*t, pick), every[[names.index(n) for n in pick]])
    torch.testing.assert_close(detail.features(*t), every[:N])


def test_the_extra_features_measure_what_they_name():
    h, w = 120, 120
    ramp = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))        # slope 1/(w-1)
    image = np.repeat(ramp[..., None], 3, axis=2)
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:, :10] = 0.0
    coarse, full = ramp.copy(), np.full((h, w), 0.5, np.float32)
    t = [torch.from_numpy(a) for a in (image.transpose(2, 0, 1).copy(), trimap, coarse, full)]
    f = dict(zip(EXTRA_FEATURES, detail.features(*t, EXTRA_FEATURES)))
    mid = (slice(40, 80), slice(40, 80))
    torch.testing.assert_close(f["grad_coarse"][mid], torch.full((40, 40), 1 / (w - 1)))
    assert f["grad_full"].abs().max() == 0
    torch.testing.assert_close(f["region_coarse"][mid], torch.from_numpy(ramp[mid]), atol=1e-5, rtol=0)
    torch.testing.assert_close(f["region_full_uncertainty"][mid], torch.ones(40, 40))
    assert 0 < f["plate_rgb_texture"][mid].max() < 0.05     # a gentle ramp: little texture
    assert f["wide_unknown_share"][60, 110] == 1 and f["wide_unknown_share"][60, 12] < 0.9
    with pytest.raises(ValueError):
        DetailModel.from_dict({**_named_model(("d", "no_such")).to_dict()})


def _snap_model(keep, zero, one, step=0.0):
    """A snap head with constant logits: the step's, then keeping the blend, 0 and 1."""
    layers = [(np.zeros((4, N), np.float32), np.array([step, keep, zero, one], np.float32))]
    return DetailModel(np.zeros(N, np.float32), np.ones(N, np.float32), layers, "snap")


def test_the_snap_head_mixes_the_blend_with_0_and_1():
    image, trimap, coarse, full = _frame()
    unknown = trimap == 0.5
    half = coarse + 0.5 * (full - coarse)
    np.testing.assert_allclose(_snap_model(20, 0, 0).blend(image, trimap, coarse, full)[unknown],
                               half[unknown], atol=1e-6)
    np.testing.assert_allclose(_snap_model(0, 0, 20).blend(image, trimap, coarse, full)[unknown],
                               1, atol=1e-6)
    np.testing.assert_allclose(_snap_model(0, 20, 0).blend(image, trimap, coarse, full)[unknown],
                               0, atol=1e-6)
    even = _snap_model(0, 0, 0).blend(image, trimap, coarse, full)         # a third of each
    np.testing.assert_allclose(even[unknown], (half[unknown] + 1) / 3, atol=1e-6)
    assert np.array_equal(even[~unknown], trimap[~unknown])


def test_the_logits_are_the_perceptron_on_the_standardised_features():
    """Inference folds the standardisation into the first layer and writes tanh as a
    sigmoid: the same function as the fitter's, for one and for two hidden layers."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(0.3, 2.0, (50, N)).astype(np.float32))
    mean, std = rng.normal(0, 1, N).astype(np.float32), rng.uniform(0.2, 3, N).astype(np.float32)
    for sizes in ((N, 6, 4), (N, 5, 7, 4)):
        layers = [(rng.standard_normal((o, i)).astype(np.float32), rng.standard_normal(o).astype(np.float32))
                  for i, o in zip(sizes[:-1], sizes[1:])]
        model = DetailModel(mean, std, layers, "snap")
        want = detail.perceptron((x - torch.from_numpy(mean)) / torch.from_numpy(std),
                                 [(torch.from_numpy(w), torch.from_numpy(b)) for w, b in layers])
        torch.testing.assert_close(model.logits(x), want, atol=1e-4, rtol=1e-4)


def test_the_model_round_trips_and_a_damaged_one_is_refused():
    model = _model(hidden=4, seed=5)
    again = DetailModel.from_dict(json.loads(json.dumps(model.to_dict())))
    x = torch.randn(20, N)
    torch.testing.assert_close(again.logits(x), model.logits(x))
    snap = _snap_model(1, 2, 3, step=0.5)
    again = DetailModel.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert again.head == "snap"
    c, f = torch.rand(20), torch.rand(20)
    torch.testing.assert_close(again.alpha(x, c, f), snap.alpha(x, c, f))
    old = {k: v for k, v in model.to_dict().items() if k != "head"}    # before the snap head
    assert DetailModel.from_dict(old).head == "step"
    for change in ({"features": ["d"]}, {"mean": [0.0] * (N - 1)}, {"std": [0.0] * N},
                   {"layers": [[[[1.0] * (N - 1)], [0.0]]]},
                   {"layers": [[[[1.0] * N] * 2, [0.0, 0.0]]]},
                   {"head": "snap"}, {"head": "sigmoid"}):
        with pytest.raises(ValueError):
            DetailModel.from_dict({**model.to_dict(), **change})


def test_the_detail_file_is_read_only_for_the_weights_it_names(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    assert load_detail_model(weights, "abc") == (None, "")          # none beside them
    record = {"weights_sha256": "abc", "model": _model(bias=1.0).to_dict()}
    detail_model_path(weights).write_text(json.dumps(record))
    model, digest = load_detail_model(weights, "abc")
    assert isinstance(model, DetailModel) and len(digest) == 64
    assert load_detail_model(weights, "other") == (None, "")        # retrained weights
    detail_model_path(weights).write_text('{"weights_sha256": "abc", "model": {"features": []}}')
    with pytest.raises(WeightsError, match="detail"):
        load_detail_model(weights, "abc")
    detail_model_path(weights).write_text("{not json")
    with pytest.raises(WeightsError, match="detail"):
        load_detail_model(weights, "abc")


def test_the_plates_spreads_do_not_depend_on_where_the_windows_start():
    """Flat and smoothly graded plates have spreads near 0, where sqrt(mean square - squared
    mean) amplifies the rounding of float32 running sums over a tile (1e-3 here before the
    means were kept in float64): the measurements of the unknown pixels alone must equal
    the whole block's, whichever pixel the sums start from."""
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    image = np.stack([0.2 + 0.6 * xx / w, 0.7 - 0.5 * yy / h, np.full((h, w), 0.9)]).astype(np.float32)
    image[:, :, :150] = 0.8
    trimap = np.full((h, w), 0.5, np.float32)
    trimap[:40], trimap[-40:] = 0.0, 1.0
    coarse = np.clip(yy / h + 0.05 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    full = np.clip(coarse + 0.1 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    args = [torch.from_numpy(a) for a in (image, trimap, coarse, full)]
    names = FEATURES + EXTRA_FEATURES
    at = args[1] == 0.5
    whole, some = features(*args, names), features(*args, names, at)
    torch.testing.assert_close(some, whole.flatten(1)[:, at.flatten()], atol=1e-5, rtol=0)


def test_a_gpu_blends_in_larger_tiles():
    """(Any tile size gives the whole frame's answer: the tests above.)"""
    assert detail.tile_size(torch.device("cuda")) == detail.DEVICE_TILE > detail.TILE
    assert detail.tile_size(torch.device("cpu")) == detail.TILE


def test_blend_stops_between_tiles_when_cancelled(monkeypatch):
    """Ctrl-C, SIGTERM or the node's Cancel reach the detail stage: it polls before each
    tile and raises Cancelled at the first True, leaving the other tiles undone."""
    from nuke_hdmatt.errors import Cancelled
    image, trimap, coarse, full = _frame(150, 60, seed=2)
    model = _model(hidden=6, seed=3)
    monkeypatch.setattr(detail, "TILE", 16)
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled):
        model.blend(image, trimap, coarse, full, cancel=cancel)
    assert len(polls) == 4
    np.testing.assert_array_equal(model.blend(image, trimap, coarse, full, cancel=lambda: False),
                                  model.blend(image, trimap, coarse, full))
