"""Network pieces: context sampling, TGNL masking, variants, configuration in the weights file."""

import numpy as np
import pytest
import torch

from nuke_hdmatt.engine.config import LIGHT, ModelConfig
from nuke_hdmatt.engine.context import context_descriptor, query_descriptor, score_candidates, select_top_k
from nuke_hdmatt.engine.network import HDMattNet, make_input
from nuke_hdmatt.engine.regions import region_masks
from nuke_hdmatt.engine.tgnl import context_attention, region_attention
from nuke_hdmatt.engine.weights import load_network, save_weights
from nuke_hdmatt.errors import WeightsError

torch.set_num_threads(1)
TINY = LIGHT.replace(blocks=(1, 1, 1, 1), width=8, stem_width=8, aspp_width=16, aspp_rates=(2,),
                     key_dim=8, value_dim=8, decoder_width=8)


def test_context_sampling_picks_the_planted_matching_patch():
    torch.manual_seed(0)
    d = 16
    q_key = torch.randn(1, d, 4, 4)
    unknown = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    unknown[..., 1:3, 1:3] = True
    qd = query_descriptor(q_key, unknown)
    cands = torch.randn(1, 6, d, 4, 4) * 0.1
    cands[0, 4] = qd[0][:, None, None] * 3  # planted: aligned with the query's unknown features
    desc = context_descriptor(cands.flatten(0, 1)).view(1, 6, d)
    scores = score_candidates(qd, desc)
    idx, vals = select_top_k(scores, 3)
    assert idx[0, 0].item() == 4
    assert torch.allclose(scores.sum(), torch.tensor(1.0))
    # invalid candidates get exactly zero probability and are never picked first
    valid = torch.ones(1, 6, dtype=torch.bool)
    valid[0, 4] = False
    scores = score_candidates(qd, desc, valid)
    assert scores[0, 4].item() == 0.0 and select_top_k(scores, 1)[0][0, 0].item() != 4


def test_query_descriptor_ignores_features_outside_the_unknown_region():
    key = torch.zeros(1, 2, 2, 2)
    key[0, :, 0, 0] = torch.tensor([1.0, 2.0])
    key[0, :, 1, 1] = torch.tensor([100.0, 100.0])
    unknown = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    unknown[0, 0, 0, 0] = True
    assert torch.equal(query_descriptor(key, unknown), torch.tensor([[1.0, 2.0]]))


@pytest.mark.parametrize("sliced", [True, False])
def test_region_attention_is_each_regions_own_softmax_with_zero_weight_elsewhere(sliced):
    g = torch.Generator().manual_seed(2)
    q, keys = torch.randn(2, 5, 4, generator=g), torch.randn(2, 12, 4, generator=g)
    bias = torch.randn(2, 12, generator=g) * 30            # wide: regions' maxima far apart
    bias[:, 8:] -= 300.0                                  # region B far below the others
    values = torch.randn(2, 12, 3, generator=g)
    label = torch.tensor([0, 1, 0, 3, 1, 1, 0, 3, 2, 2, 2, 3])       # 3: in no region
    regions = torch.stack([label == r for r in range(3)])[None].repeat(2, 1, 1)
    regions[1, 1] = False                                 # batch 1: region F absent
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[1, 3:] = False                                  # batch 1: only rows 0-2 matter
    got = region_attention(q * 7, keys, values, regions, bias, valid, sliced=sliced)
    assert got.shape == (2, 5, 3, 3) and torch.isfinite(got).all()
    for b in range(2):
        rows = int(valid[b].sum())
        logits = (q[b] * 7) @ keys[b].T + bias[b]
        for r in range(3):
            cols = regions[b, r]
            if not cols.any():
                assert torch.all(got[b, :, r] == 0)
                continue
            want = torch.softmax(logits[:, cols], dim=-1) @ values[b][cols]
            torch.testing.assert_close(got[b, :rows, r], want[:rows])


def _tgnl_inputs(b=2, k=3, dk=8, dv=4, h=4, w=4):
    g = torch.Generator().manual_seed(1)
    q_key, q_val = torch.randn(b, dk, h, w, generator=g), torch.randn(b, dv, h, w, generator=g)
    q_unknown = torch.ones(b, 1, h, w, dtype=torch.bool)
    c_key, c_val = torch.randn(b, k, dk, h, w, generator=g), torch.randn(b, k, dv, h, w, generator=g)
    regions = torch.zeros(b, k, 3, h, w, dtype=torch.bool)
    regions[:, :, 0, :2] = True   # U in the top half
    regions[:, :, 2, 2:] = True   # B in the bottom half; no F anywhere
    return q_key, q_val, q_unknown, c_key, c_val, regions


def test_tgnl_with_a_missing_region_is_finite_and_falls_back_to_the_query_value():
    q_key, q_val, q_unknown, c_key, c_val, regions = _tgnl_inputs()
    out = context_attention(q_key, q_val, q_unknown, c_key, c_val, regions, None, guided=True)
    assert out.shape == (2, 12, 4, 4) and torch.isfinite(out).all()
    f_f = out[:, 4:8]                       # no F region in any context patch
    torch.testing.assert_close(f_f, q_val)
    # changing values in masked (F-less, U) positions must not change f_B
    c_val2 = c_val.clone()
    c_val2[:, :, :, :2] += 1000.0            # U positions only
    out2 = context_attention(q_key, q_val, q_unknown, c_key, c_val2, regions, None, guided=True)
    torch.testing.assert_close(out2[:, 8:], out[:, 8:])
    assert not torch.allclose(out2[:, :4], out[:, :4])


def test_tgnl_output_is_zero_outside_the_query_unknown_region():
    q_key, q_val, q_unknown, c_key, c_val, regions = _tgnl_inputs()
    q_unknown[:, :, :, :2] = False
    out = context_attention(q_key, q_val, q_unknown, c_key, c_val, regions, None, guided=True)
    assert torch.all(out[..., :2] == 0) and torch.any(out[..., 2:] != 0)


def test_plain_non_local_variant_b_has_one_region():
    q_key, q_val, q_unknown, c_key, c_val, regions = _tgnl_inputs()
    out = context_attention(q_key, q_val, q_unknown, c_key, c_val, regions, None, guided=False)
    assert out.shape == (2, 4, 4, 4)


def test_region_masks_mark_mixed_cells_unknown():
    tri = torch.zeros(1, 1, 16, 16)
    tri[..., :8, :] = 1.0
    tri[..., 0, 0] = 0.5            # one unknown pixel makes its whole cell unknown
    tri[..., 8:, 8:9] = 1.0         # a foreground pixel in background: mixed cell -> unknown
    m = region_masks(tri)
    assert m[0, 0, 0, 0] and not m[0, 1, 0, 0]
    assert m[0, 1, 0, 1]
    assert m[0, 0, 1, 1] and not m[0, 2, 1, 1]
    assert m[0, 2, 1, 0]
    assert torch.all(m.sum(1) == 1)


@pytest.mark.parametrize("variant", ["A", "B", "C", "D"])
def test_each_variant_trains_a_step_and_outputs_alpha_in_range(variant):
    cfg = TINY.replace(variant=variant)
    net = HDMattNet(cfg)
    b, n, s = 2, 3, 32
    img, pri = torch.rand(b, 3, s, s), torch.rand(b, 1, s, s)
    tri = torch.full((b, 1, s, s), 0.5)
    tri[..., :8, :] = 1
    tri[..., 24:, :] = 0
    x = make_input(img, tri, pri, cfg)
    cx = torch.stack([x] * n, 1)
    out = net(x, tri, pri, cx, torch.stack([tri] * n, 1))
    assert out.shape == (b, 1, s, s) and out.min() >= 0 and out.max() <= 1
    out.mean().backward()
    assert all(p.grad is not None for p in net.decoder.parameters())


def test_untrained_variant_d_returns_its_prior():
    net = HDMattNet(TINY.replace(variant="D")).eval()
    b, s = 1, 32
    img, pri = torch.rand(b, 3, s, s), torch.rand(b, 1, s, s) * 0.98 + 0.01
    tri = torch.full((b, 1, s, s), 0.5)
    x = make_input(img, tri, pri, net.cfg)
    out = net(x, tri, pri, torch.stack([x] * 2, 1), torch.stack([tri] * 2, 1))
    torch.testing.assert_close(out, pri, atol=1e-5, rtol=0)


def test_configuration_travels_inside_the_weights_file(tmp_path):
    cfg = TINY.replace(variant="C", k=5)
    net = HDMattNet(cfg)
    path = tmp_path / "w.safetensors"
    save_weights(net, path, extra={"step": 7})
    loaded, info = load_network(path)
    assert loaded.cfg == cfg and info == {"step": 7}
    for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a.half().float(), msg=name)
    assert not list(tmp_path.glob(".*tmp*"))


def test_config_rejects_unknown_keys_and_bad_variants():
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"variant": "C", "wdith": 3})
    with pytest.raises(ValueError):
        ModelConfig(variant="E")


def test_a_file_that_is_not_hdmatt_weights_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="bad.safetensors"):
        load_network(bad)
    with pytest.raises(WeightsError, match="not found"):
        load_network(tmp_path / "missing.safetensors")


def test_folding_batchnorm_keeps_the_output_and_removes_every_batchnorm():
    import copy

    from nuke_hdmatt.engine.fold import fold_batchnorm
    torch.manual_seed(0)
    net = HDMattNet(TINY.replace(variant="C"))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):   # non-trivial statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 4, 32, 32)
    a, b = net.encode(x), folded.encode(x)
    torch.testing.assert_close(b["deep"], a["deep"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b["s0"], a["s0"], atol=1e-5, rtol=1e-5)


def test_tgnl_given_an_unknown_bound_gives_the_same_features():
    q_key, q_val, q_unknown, c_key, c_val, regions = _tgnl_inputs()
    q_unknown[0, :, :, :2] = False
    args = (q_key, q_val, q_unknown, c_key, c_val, regions, None)
    want = context_attention(*args, guided=True)
    for bound in (int(q_unknown.flatten(1).sum(1).max()), 16, 1000):
        torch.testing.assert_close(context_attention(*args, guided=True, max_unknown=bound), want)


def test_host_count_of_unknown_cells_matches_the_region_masks():
    from nuke_hdmatt.engine.regions import max_unknown_cells
    rng = np.random.default_rng(2)
    for _ in range(5):
        tri = rng.choice([0.0, 0.5, 1.0], size=(3, 40, 48), p=[0.45, 0.1, 0.45]).astype(np.float32)
        tri[1, :16] = 1.0
        tri[2, 8:24, 5:40] = 0.0
        tri[0, 16:32, 8:16] = 0.5
        want = region_masks(torch.from_numpy(tri)[:, None])[:, 0].flatten(1).sum(1).max()
        assert max_unknown_cells(tri) == int(want)


def test_tgnl_logits_do_not_overflow_in_fp16():
    """Keys of a few hundred: q.k reaches 1e6, beyond fp16 (65504); attention stays finite
    and equal to its float32 result under fp16 autocast."""
    q_key, q_val, q_unknown, c_key, c_val, regions = _tgnl_inputs()
    q_key, c_key = q_key.sign() * 300.0, c_key.sign() * 300.0
    args = (q_key, q_val, q_unknown, c_key, c_val, regions, None)
    want = context_attention(*args, guided=True)
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            got = context_attention(*args, guided=True)
    except RuntimeError as exc:                        # a CPU build without fp16 autocast
        pytest.skip(f"no fp16 autocast on CPU: {exc}")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=1e-2)


def test_feature_bank_stores_grows_and_gathers_in_any_order():
    from nuke_hdmatt.engine.bank import FeatureBank
    bank = FeatureBank()
    feats = lambda base: {"key": torch.arange(4.0)[:, None] + base,
                          "tag": torch.arange(4)[:, None] + int(base)}
    bank.add([(0, 0), (0, 1), (0, 2), (0, 3)], feats(0.0))
    bank.reserve(12)
    assert bank.store["key"].shape[0] == 12
    bank.add([(1, 0), (1, 1), (1, 2), (1, 3)], feats(10.0))
    bank.add([(2, 0), (2, 1), (2, 2), (2, 3)], feats(20.0))
    assert bank.store["key"].shape[0] == 12                           # reserved: no regrowth
    bank.add([(3, 0)], {"key": torch.tensor([[99.0]]), "tag": torch.tensor([[99]])})   # grows
    assert list(bank)[:2] == [(0, 0), (0, 1)] and len(bank) == 13 and (3, 0) in bank
    got = bank.gather([(3, 0), (1, 2), (0, 1), (2, 3)], ("key", "tag"))
    assert got["key"][:, 0].tolist() == [99.0, 12.0, 1.0, 23.0]
    assert got["tag"][:, 0].tolist() == [99, 12, 1, 23]


def test_decoding_only_the_wanted_tiles_gives_their_pixels_the_whole_patch_answer():
    from nuke_hdmatt.engine.decoder import TILES, wanted_tiles
    torch.manual_seed(0)
    net = HDMattNet(TINY.replace(variant="D")).eval()
    torch.nn.init.normal_(net.decoder.head.weight, std=0.5)     # a residual that moves alpha
    b, p = 3, 64
    trimap = np.ones((b, p, p), np.float32)
    trimap[:, :, : p // 2] = 0.0
    trimap[0, 20:22, 4:60] = 0.5          # a thin band through the middle tiles
    trimap[1, 40:60, 44:60] = 0.5         # a block in one corner's tiles
    trimap[2, :2, :2] = 0.5               # a speck in the corner: its tile's margin is off the patch
    tiles = wanted_tiles(trimap)
    assert tiles is not None and 0 < tiles.mean() < 0.5 and tiles[2, 0, 0] and tiles.sum() < b * TILES ** 2
    tri = torch.from_numpy(trimap)[:, None]
    prior = torch.rand(b, 1, p, p)
    x = make_input(torch.rand(b, 3, p, p), tri, prior, net.cfg)
    q_ctx = net.context_features(net.encode(x), tri)
    c_ctx = {k: q_ctx[k][:, None] for k in ("key", "value", "regions")}
    with torch.no_grad():
        feats = net.encode(x)
        whole = net.decode(feats, q_ctx, c_ctx, x, prior)
        cut = net.decode(feats, q_ctx, c_ctx, x, prior, tiles=torch.from_numpy(tiles))
    unknown = tri == 0.5
    assert (whole - prior).abs()[unknown].mean() > 0.01        # the network does move them
    torch.testing.assert_close(cut[unknown], whole[unknown], atol=1e-6, rtol=0)
    # the tiles no unknown pixel asked for keep the prior (a zero residual)
    skipped = ~torch.from_numpy(tiles).repeat_interleave(p // TILES, 1).repeat_interleave(p // TILES, 2)
    torch.testing.assert_close(cut[:, 0][skipped], prior[:, 0][skipped], atol=1e-4, rtol=0)


def test_tiles_are_decoded_whole_when_most_are_wanted_or_too_small():
    from nuke_hdmatt.engine.decoder import MAX_WANTED, wanted_tiles
    trimap = np.zeros((2, 320, 320), np.float32)
    trimap[:, 170:190] = 0.5                       # one row of tiles in four
    assert wanted_tiles(trimap).mean() == 0.25
    trimap[:, 10:300:80] = 0.5                     # every tile
    assert MAX_WANTED < 1 and wanted_tiles(trimap) is None
    speck = np.zeros((1, 32, 32), np.float32)
    speck[0, 0, 0] = 0.5                           # one tile in 16 wanted, but 8 px tiles
    assert wanted_tiles(speck) is None
