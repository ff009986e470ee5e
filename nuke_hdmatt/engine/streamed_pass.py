"""One frame's pass of the network over its query patches: encode first, decode second.

Pass 1 encodes every patch that holds unknown pixels (the queries) and the pure F / B
patches bordering a query that lacks a region they hold (:func:`.pool.border_cells`),
keeping only their compact context features (key, value, regions and descriptors at 1/8
resolution) in a :class:`.bank.FeatureBank` on the engine's device. Pass 2 decodes the
queries batch by batch, each with its top-K context from the ``pool`` candidates
:func:`.pool.candidates` picks over the whole frame; every query sees all of pass 1, so
the result does not depend on the order of the patches. The decoder's full-resolution layers
run only on the tiles of a query that hold unknown pixels (:func:`.decoder.wanted_tiles`):
the engine keeps no other pixel of a patch.

Memory (besides the frame's input and output arrays, the prior for variant D, the
alpha accumulator, one HxW float32 on the device, and on a GPU the device's copy of the
image, trimap and prior, 20 bytes a pixel): the compact features of every encoded
patch, about 0.6 MB a 320 px patch for the light configuration in fp32 (key 32 + value 64
channels at 40x40; 0.3 MB under fp16 autocast), so ~50 MB for the 86 queries of the
benchmarks' 6000x4000 frame with a 10 % unknown band (no clean patch beside them offers a
region they lack); each query's ``deep`` features (ASPP output at 1/8, 128 channels:
0.8 MB, ~70 MB for those 86 queries); plus the decoder features (skips at 1/1, 1/2, 1/4,
their pooling indices and the input, ~17 MB a patch) of one batch of queries. The skips
are not kept from pass 1 (~17 MB a query, 1.4 GB at 6K) but recomputed in pass 2 from the
kept ``deep``: the full-resolution layers they come from are about 7 % of the encoder's
work, so a query's dilated 1/8 stages and ASPP run once. Small frames (at most
``pool + 1`` queries) keep their skips from pass 1: at most ``pool + 1`` patches' worth.

The frame (image, trimap, prior) is uploaded once; patches are cut from it and blended
into the accumulator on the device (the host sends only their pixel indices, from pinned
memory on CUDA), and the frame's alpha is downloaded once at the end; the host
waits for the device only there (cancel and progress are polled per batch without reading
anything back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled
from .bank import FeatureBank
from .context import score_candidates, select_top_k
from .decoder import wanted_tiles
from .network import make_input
from .pool import border_cells, candidates
from .regions import clean_regions, max_unknown_cells
from .tiling import PatchGrid, reflect_indices


@dataclass(frozen=True)
class PassPlan:
    """What one pass over a frame runs: its patch ``grid``, the ``queries`` (cells holding
    unknown pixels, raster order) and the ``encoded`` cells of pass 1 (the queries, then
    the clean cells bordering them; empty without the context pool)."""

    grid: PatchGrid
    queries: list
    encoded: list

    @property
    def steps(self) -> int:
        """The pass's progress count: each patch through pass 1's encoder, each query
        through pass 2's decoder (without the pool, the queries alone)."""
        return len(self.encoded) + len(self.queries)


def plan_pass(eng, trimap: np.ndarray) -> PassPlan:
    """The :class:`PassPlan` of engine ``eng`` on ``trimap`` (cheap: the trimap's cells
    only, so a frame's passes can be counted before any of them runs)."""
    h, w = trimap.shape
    grid = PatchGrid(h, w, eng.patch, eng.overlap)
    queries = [(r, c) for r in range(grid.rows) for c in range(grid.cols)
               if (grid.extract(trimap, r, c) == 0.5).any()]
    if not (eng.cfg.uses_context and eng.context):
        return PassPlan(grid, queries, [])
    held: dict = {}

    def regions(cell) -> frozenset:
        if cell not in held:
            held[cell] = clean_regions(grid.extract(trimap, *cell))
        return held[cell]
    return PassPlan(grid, queries, queries + border_cells(queries, (grid.rows, grid.cols), regions))


class StreamedPass:
    """Encode, then decode, the query patches of one frame (see the module docstring).

    ``acc``: an HxW float32 device tensor the blended alpha is added into.
    """

    def __init__(self, eng, plan: "PassPlan", image, trimap, prior, acc, progress, cancel):
        self.eng, self.grid, self.acc = eng, plan.grid, acc
        self.trimap = trimap
        self.queries, self.encoded = plan.queries, plan.encoded
        self.progress, self.cancel = progress, cancel
        self.with_pool = bool(plan.encoded)
        self._unknown: dict = {}      # cell -> its patch's count of unknown feature cells
        # the frame goes to the device once (on the CPU without a copy; not pinned: a
        # page-locked copy of a 6K plate would cost more host time than it saves), and
        # patches are cut there
        self.planes = [torch.from_numpy(np.ascontiguousarray(a)).to(eng.device)
                       for a in (image, trimap, prior) if a is not None]
        self.keep_skips = len(self.queries) <= eng.pool + 1
        self.steps = plan.steps
        self.ctx = FeatureBank()
        self.deep = FeatureBank()     # the queries' 1/8 features, for pass 2's re-encode
        self.kept: list = []          # [(cells, decoder features)] of small frames, from pass 1
        self._weights: dict = {}
        self.done = 0

    def _step(self, n: int):
        """``n`` more of the pass's :attr:`PassPlan.steps` done, told to ``progress``."""
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.steps, "patches")

    def _check_cancel(self):
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled")

    def _batches(self, cells):
        b = self.eng.batch
        return [cells[s:s + b] for s in range(0, len(cells), b)]

    def run(self):
        if self.with_pool:
            self._encode_pool()
        if self.kept:
            while self.kept:     # each batch's skips are freed once it is decoded
                self._decode(*self.kept.pop(0))
            return
        for chunk in self._batches(self.queries):
            # pass 1 has the query's compact and deep features already (same batches as
            # here, so the same numbers): only the skips are computed again
            if self.with_pool:
                feats, _ = self._encode(chunk, context=False,
                                        deep=self.deep.gather(chunk, ("deep",))["deep"])
                feats["ctx"] = self.ctx.gather(chunk, tuple(self.ctx.store))
            else:
                feats, _ = self._encode(chunk)
            self._decode(chunk, feats)

    # --- pass 1 ------------------------------------------------------------------------
    def _encode_pool(self):
        """Compact context features of every encoded cell; the queries' deep features, or
        on small frames all their decoder features."""
        n_query = len(self.queries)
        for cells, is_query in ((self.queries, True), (self.encoded[n_query:], False)):
            for chunk in self._batches(cells):
                feats, ctx = self._encode(chunk)
                self.ctx.add(chunk, ctx)
                self.ctx.reserve(len(self.encoded))
                self._step(len(chunk))
                if is_query and self.keep_skips:
                    self.kept.append((chunk, feats))
                elif is_query:
                    self.deep.add(chunk, {"deep": feats["deep"]})
                    self.deep.reserve(n_query)
                del feats        # else the skips would live on into the next batch's encode

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.eng.device.type == "cuda":
            # from pinned memory the copy runs without the host waiting for it
            return t.pin_memory().to(self.eng.device, non_blocking=True)
        return t

    def _cut(self, cells) -> list:
        """Each plane's patches at ``cells``, (B, P, P[, 3]), gathered on the device with
        the reflection :meth:`.tiling.PatchGrid.extract` pads them with past the frame."""
        g = self.grid
        ys = np.stack([reflect_indices(g.origin(r, c)[0], g.patch, g.height) for r, c in cells])
        xs = np.stack([reflect_indices(g.origin(r, c)[1], g.patch, g.width) for r, c in cells])
        rows, cols = self._upload(ys)[:, :, None], self._upload(xs)[:, None, :]
        return [plane[rows, cols] for plane in self.planes]

    def _max_unknown(self, cells) -> int:
        """The most unknown feature cells in the patches at ``cells``, counted on the host
        (once a cell), so attention never waits to read the count off a GPU."""
        for cell in cells:
            if cell not in self._unknown:
                self._unknown[cell] = max_unknown_cells(self.grid.extract(self.trimap, *cell)[None])
        return max(self._unknown[cell] for cell in cells)

    def _tiles(self, cells):
        """The decoder's wanted tiles of the patches at ``cells`` (:func:`.decoder.wanted_tiles`),
        read off the host's trimap, or None to decode the patches whole."""
        wanted = wanted_tiles(np.stack([self.grid.extract(self.trimap, *cell) for cell in cells]))
        return None if wanted is None else torch.from_numpy(wanted)

    def _inputs(self, cells):
        img, tri, *pri = self._cut(cells)
        t_tri = tri[:, None]
        t_pri = pri[0][:, None] if pri else None
        x = make_input(img.permute(0, 3, 1, 2), t_tri, t_pri, self.eng.cfg).contiguous(
            memory_format=torch.channels_last)
        return x, t_tri, t_pri, self._max_unknown(cells)

    def _encode(self, cells, context=True, deep=None):
        """(decoder features, compact context features or None) of a batch of cells;
        ``deep``: their kept 1/8 features (see :meth:`.network.HDMattNet.encode`)."""
        net, eng = self.eng.net, self.eng
        self._check_cancel()
        x, tri, pri, max_unknown = self._inputs(cells)
        with eng.stage("encode"):
            feats = net.encode(x, deep)
        ctx = None
        if context:
            with eng.stage("cpc"):
                ctx = net.context_features(feats, tri)
        feats["x"], feats["prior"], feats["max_unknown"] = x, pri, max_unknown
        feats["ctx"] = ctx
        return feats, ctx

    # --- pass 2 ------------------------------------------------------------------------
    def _select(self, chunk, q_ctx):
        """Top-K context for each query of ``chunk``: stacked key/value/regions/scores.

        Each distinct candidate's features are gathered once per chunk (queries of a chunk
        share many of their candidates) and indexed from there. Slots left empty (fewer
        candidates than K, or context off) point at the query itself with zero regions and
        a zero score, so attention gives them exactly zero weight.
        """
        eng, dev = self.eng, self.eng.device
        cands = [candidates(q, self.encoded, eng.pool) if self.with_pool else [] for q in chunk]
        ids = sorted({c for cs in cands for c in cs})
        b = len(chunk)
        if not ids:
            return {"key": q_ctx["key"][:, None], "value": q_ctx["value"][:, None],
                    "regions": torch.zeros_like(q_ctx["regions"])[:, None],
                    "scores": q_ctx["key"].new_zeros((b, 1)).float()}
        row = {c: i for i, c in enumerate(ids)}
        n = max(1, max(len(c) for c in cands))
        blank = len(ids)       # the empty slot's index: one past the table, see below
        slot = torch.tensor([[row[c] for c in cs] + [blank] * (n - len(cs)) for cs in cands],
                            dtype=torch.long, device=dev)
        lengths = torch.tensor([len(cs) for cs in cands], device=dev)
        valid = torch.arange(n, device=dev)[None, :] < lengths[:, None]
        table = self.ctx.gather(ids, ("desc", "key", "value", "regions"))
        # the empty slot: one query's own features (zero regions and score hide them)
        table = {k: torch.cat([v, q_ctx[k][:1]]) for k, v in table.items()}
        desc = table["desc"].float()[slot] * valid[..., None]
        idx, scores = select_top_k(score_candidates(q_ctx["qdesc"].float(), desc, valid), eng.k)
        ok = valid.gather(1, idx)
        chosen = torch.where(ok, slot.gather(1, idx), blank)
        regions = table["regions"][chosen]
        regions = regions * ok.view(*ok.shape, *([1] * (regions.dim() - 2))).to(regions.dtype)
        scores = torch.where(ok, scores, scores.new_zeros(()))
        scores = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return {"key": table["key"][chosen], "value": table["value"][chosen],
                "regions": regions, "scores": scores}

    def _decode(self, chunk, feats):
        eng = self.eng
        self._check_cancel()
        q_ctx, c_sel = feats.pop("ctx"), None
        if eng.cfg.uses_context:
            with eng.stage("cpc"):
                c_sel = self._select(chunk, q_ctx)
        with eng.stage("decode"):
            out = eng.net.decode(feats, q_ctx, c_sel, feats["x"], feats["prior"],
                                 feats["max_unknown"], self._tiles(chunk))
        out = out[:, 0].float()
        for j, (r, c) in enumerate(chunk):
            self._accumulate(out[j], r, c)
        self._step(len(chunk))

    def _accumulate(self, values: torch.Tensor, r: int, c: int):
        """``acc += weights * values`` over cell (r, c)'s in-frame part, on the device (the
        same float32 products and sums as :meth:`.tiling.PatchGrid.accumulate`)."""
        g = self.grid
        key = (r > 0, r < g.rows - 1, c > 0, c < g.cols - 1)    # the ramps depend only on this
        if key not in self._weights:
            self._weights[key] = self._upload(g.weights(r, c)).to(self.acc.device)
        y0, y1, x0, x1 = g.cell_bounds(r, c)
        self.acc[y0:y1, x0:x1] += (self._weights[key] * values)[:y1 - y0, :x1 - x0]
