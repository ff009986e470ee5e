"""The context pool: encode first, decode second; candidates spread over the whole frame."""

import random
import weakref
from pathlib import Path

import numpy as np
import torch

from nuke_hdmatt.engine import streamed_pass
from nuke_hdmatt.engine.pool import NEAR, border_cells, candidates
from nuke_hdmatt.engine.regions import BACKGROUND, FOREGROUND, clean_regions, max_unknown_cells
from nuke_hdmatt.engine.streamed_pass import PassPlan, StreamedPass, plan_pass
from nuke_hdmatt.engine.tiling import PatchGrid
from test_engine_runner import EncodeSpy, make_engine

DATA = Path(__file__).resolve().parent / "data"


# --- the rule -----------------------------------------------------------------------------
def test_all_other_cells_when_they_fit_in_raster_order():
    cells = [(2, 1), (0, 3), (1, 1), (0, 0)]
    assert candidates((1, 1), cells, 3) == [(0, 0), (0, 3), (2, 1)]
    assert candidates((5, 5), cells, 30) == sorted(cells)


def test_a_pool_of_one_is_the_nearest_cell_not_the_farthest():
    cells = [(r, c) for r in range(4) for c in range(6)]
    assert candidates((0, 0), cells, 1) == [(0, 1)]


def test_candidates_cover_the_frame_nearest_first():
    cells = [(r, c) for r in range(14) for c in range(21)]
    got = candidates((7, 10), cells, 30)
    assert len(got) == len(set(got)) == 30 and (7, 10) not in got
    ring = {(7 + dr, 10 + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)} - {(7, 10)}
    assert set(got[:NEAR]) == ring                                   # nearest neighbours first
    rows, cols = {r for r, _ in got}, {c for _, c in got}
    assert min(rows) <= 1 and max(rows) >= 12 and min(cols) <= 2 and max(cols) >= 18
    # a query on the top row still gets candidates from the bottom of the frame
    top = candidates((0, 10), cells, 30)
    assert max(r for r, _ in top) >= 12 and min(c for _, c in top) <= 2 and max(c for _, c in top) >= 18


def test_candidates_do_not_depend_on_the_order_cells_come_in():
    rng = random.Random(0)
    cells = [(r + 0.5 * (c % 3), c * 1.7) for r in range(9) for c in range(11)]   # any coordinates
    want = candidates(cells[40], cells, 12)
    for _ in range(5):
        rng.shuffle(cells)
        assert candidates(cells[cells.index(want[0])], cells, 12) == \
            candidates(cells[cells.index(want[0])], list(reversed(cells)), 12)
    assert candidates((3.5, 11.9), cells, 12) == candidates((3.5, 11.9), sorted(cells), 12)


def test_the_farthest_clean_sample_down_a_column_is_a_candidate():
    column = [(r, 0) for r in range(10)]
    assert (9, 0) in candidates((0, 0), column, 4)


def test_border_cells_share_an_edge_with_a_query_and_stay_in_the_grid():
    assert border_cells([(0, 0), (0, 1)], (2, 3)) == [(0, 2), (1, 0), (1, 1)]


def test_a_border_cell_is_kept_only_where_it_offers_a_region_a_query_beside_it_lacks():
    held = {(0, 0): {"B"}, (0, 1): {"F", "B"}, (0, 2): {"F"}, (1, 0): {"F"}, (1, 1): {"B"},
            (1, 2): {"F"}}
    # (0, 2) and (1, 1) give (0, 1) nothing new; (1, 0) gives (0, 0) the F it lacks;
    # (1, 2) borders no query
    assert border_cells([(0, 0), (0, 1)], (2, 3), lambda c: held[c]) == [(1, 0)]


def test_clean_regions_are_whole_feature_cells_of_one_label():
    t = np.zeros((16, 24), np.float32)
    assert clean_regions(t) == {BACKGROUND}
    t[:8, 8:16] = 1.0
    assert clean_regions(t) == {FOREGROUND, BACKGROUND}
    t[3, 10] = 0.0                     # the only foreground cell, no longer whole
    t[8:, :] = 0.5
    t[:8, ::2] = 0.5                   # nor any background cell
    assert clean_regions(t) == set()


# --- the engine ---------------------------------------------------------------------------
def column_scene():
    """32 px wide, 320 tall: an unknown band (with background pixels) over rows 0-215 and
    foreground below, speckled with background over rows 216-223, so that no patch holding
    unknown pixels holds a whole foreground feature cell: the only clean foreground patches
    lie far below the top query."""
    rng = np.random.default_rng(5)
    image = rng.random((320, 32, 3), dtype=np.float32)
    trimap = np.full((320, 32), 0.5, np.float32)
    trimap[:216, ::4] = 0.0
    trimap[216:] = 1.0
    trimap[216:224, ::4] = 0.0
    return image, trimap


def test_a_clean_foreground_patch_far_below_reaches_the_top_query():
    eng = make_engine(pool=4, k=4, batch=2)
    image, trimap = column_scene()
    grid = PatchGrid(320, 32, 32, 8)
    # queries are cells 0-8; cell 9 (rows 216-247) is clean and borders the band, and it
    # holds the foreground feature cells that query 8 lacks
    assert (grid.extract(trimap, 9, 0) != 0.5).all() and (grid.extract(trimap, 8, 0) == 0.5).any()
    assert clean_regions(grid.extract(trimap, 9, 0)) - clean_regions(grid.extract(trimap, 8, 0)) \
        == {FOREGROUND}
    assert (9, 0) in candidates((0, 0), [(r, 0) for r in range(10)], eng.pool)
    before = eng.matte(image, trimap)
    image[226:240] = 1.0 - image[226:240]        # rows only cell 9 covers (cell 10 starts at 240)
    after = eng.matte(image, trimap)
    # rows 0-23 are blended from cell 0 alone: its context holds cell 9, nine cells below
    assert np.abs(after[:24] - before[:24]).max() > 1e-4


def big_scene():
    rng = np.random.default_rng(3)
    image = rng.random((200, 260, 3), dtype=np.float32)
    trimap = np.zeros((200, 260), np.float32)
    trimap[::7, :] = 0.5              # unknown pixels in every patch
    trimap[3::7, ::5] = 1.0
    trimap[100:, 200:] = 1.0          # and a clean foreground corner
    trimap[100:128, 200::4] = 0.0     # whose rim, which queries share, holds no whole
    trimap[100:, 200:224:4] = 0.0     # foreground feature cell
    return image, trimap


def test_each_query_chooses_from_the_whole_frame(monkeypatch):
    seen = {}

    def record(query, encoded, n):
        got = candidates(query, encoded, n)
        seen[query] = got
        return got
    monkeypatch.setattr(streamed_pass, "candidates", record)
    eng = make_engine(pool=6, batch=3)
    make_engine(pool=6).matte(*big_scene())
    eng.matte(*big_scene())
    rows = max(r for r, _ in seen)
    assert all(len(c) == 6 for c in seen.values())
    assert max(r for r, _ in seen[(0, 0)]) >= rows - 1           # the top row sees the bottom
    assert min(r for r, _ in seen[(rows, 0)]) <= 1                # and the bottom row the top
    mid = seen[(rows // 2, 5)]
    assert min(r for r, _ in mid) < rows // 2 - 1 < rows // 2 + 1 < max(r for r, _ in mid)


def run_pass(eng, image, trimap, order):
    plan = plan_pass(eng, trimap)
    queries = order(plan.queries)
    border = plan.encoded[len(plan.queries):]
    with torch.inference_mode():
        acc = torch.zeros(trimap.shape)
        StreamedPass(eng, PassPlan(plan.grid, queries, queries + order(border)), image, trimap,
                     None, acc, None, None).run()
    return acc.numpy()


def test_the_result_does_not_depend_on_the_order_queries_are_taken_in():
    eng = make_engine(pool=5, batch=3)
    image, trimap = big_scene()
    forward = run_pass(eng, image, trimap, lambda q: q)
    backward = run_pass(eng, image, trimap, lambda q: q[::-1])
    shuffled = run_pass(eng, image, trimap, lambda q: random.Random(1).sample(q, len(q)))
    assert np.ptp(forward) > 0
    np.testing.assert_allclose(backward, forward, atol=1e-5)
    np.testing.assert_allclose(shuffled, forward, atol=1e-5)


def test_decoder_features_never_exist_for_more_than_one_batch():
    eng = make_engine(pool=4, batch=3, flip=False)      # one pass's encodes counted
    image, trimap = big_scene()
    alive: weakref.WeakSet = weakref.WeakSet()
    most = []
    encode, decode = eng.net.encode, eng.net.decode

    def count():
        most.append(sum(t.shape[0] for t in alive))

    def spy_encode(x, deep=None):
        count()
        feats = encode(x, deep)
        alive.add(feats["s0"])
        return feats

    def spy_decode(*args, **kw):
        count()
        return decode(*args, **kw)
    eng.net.encode, eng.net.decode = spy_encode, spy_decode
    spy = EncodeSpy(eng)
    alpha = eng.matte(image, trimap)
    grid = PatchGrid(200, 260, 32, 8)
    assert len(grid) > eng.pool + 1 and np.isfinite(alpha).all()
    assert max(most) <= eng.batch
    # every encoded patch's 1/8 stages run once; pass 2 recomputes only the queries' skips
    queries = [(r, c) for r in range(grid.rows) for c in range(grid.cols)
               if (grid.extract(trimap, r, c) == 0.5).any()]
    border = border_cells(queries, (grid.rows, grid.cols),
                          lambda cell: clean_regions(grid.extract(trimap, *cell)))
    assert len(border) > 0 and sum(spy.sizes) == len(queries) + len(border)
    assert sum(spy.reused) == len(queries)


def test_kept_deep_features_give_the_alpha_of_a_full_re_encode():
    eng = make_engine(pool=4, batch=3)
    image, trimap = big_scene()
    kept = eng.matte(image, trimap)
    encode = eng.net.encode
    eng.net.encode = lambda x, deep=None: encode(x)      # pass 2 runs the whole encoder again
    np.testing.assert_array_equal(eng.matte(image, trimap), kept)


def small_frame():
    rng = np.random.default_rng(7)
    image = rng.random((64, 96, 3), dtype=np.float32)
    trimap = np.zeros((64, 96), np.float32)
    trimap[:, 40:] = 1.0
    trimap[::7, :] = 0.5
    trimap[20:40, 30:60] = 0.5
    return image, trimap


def test_small_frames_matte_as_before_the_frame_wide_pool():
    # alphas of the reservoir engine (main at 6236ceb) on a 12-patch frame whose patches all
    # hold unknown pixels: every other patch is a candidate, then and now (one pass, not
    # snapped to 0 and 1, as they were recorded)
    want = np.load(DATA / "small_frame_alpha_main.npz")
    image, trimap = small_frame()
    for variant in ("C", "D"):
        got = make_engine(variant, flip=False, snap=0.0).matte(image, trimap)
        assert np.abs(got - want[variant]).max() < 1e-5


def test_patches_are_cut_from_the_frame_on_the_device_as_the_grid_extracts_them():
    eng = make_engine(pool=4, batch=3)
    image, trimap = big_scene()
    image, trimap = image[:197, :253].copy(), trimap[:197, :253].copy()   # last patches reflect
    prior = np.random.default_rng(4).random(trimap.shape, dtype=np.float32)
    grid = PatchGrid(*trimap.shape, eng.patch, eng.overlap)
    cells = [(0, 0), (3, 4), (grid.rows - 1, grid.cols - 1)]    # the last past both edges
    y0, x0 = grid.origin(*cells[2])
    assert y0 + grid.patch > trimap.shape[0] and x0 + grid.patch > trimap.shape[1]
    sp = StreamedPass(eng, PassPlan(grid, cells, cells), image, trimap, prior,
                      torch.zeros(trimap.shape), None, None)
    # uploaded once: on the CPU the planes are the caller's arrays, not copies
    assert sp.planes[0].data_ptr() == image.__array_interface__["data"][0]
    for plane, array in zip(sp._cut(cells), (image, trimap, prior)):
        np.testing.assert_array_equal(plane.numpy(), np.stack([grid.extract(array, r, c)
                                                               for r, c in cells]))
    assert sp._max_unknown(cells) == max_unknown_cells(np.stack([grid.extract(trimap, r, c)
                                                                 for r, c in cells]))


def test_the_engine_decodes_only_tiles_with_unknown_pixels_and_mattes_as_before(monkeypatch):
    from nuke_hdmatt.engine.decoder import Decoder
    image, trimap = big_scene()
    trimap = np.where(trimap == 0.5, 0.0, trimap)
    trimap[60:63, 10:250] = 0.5                     # a thin band: most tiles of its patches are known
    trimap[150:190, 30:34] = 0.5
    eng = make_engine("C", patch=64, overlap=16)      # no prior: every alpha is the network's
    calls = []
    tiled = Decoder._last_tiled
    monkeypatch.setattr(Decoder, "_last_tiled", lambda self, *a: calls.append(1) or tiled(self, *a))
    got = eng.matte(image, trimap)
    assert calls and got[trimap == 0.5].std() > 0.01
    monkeypatch.setattr(StreamedPass, "_tiles", lambda self, cells: None)
    want = eng.matte(image, trimap)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
