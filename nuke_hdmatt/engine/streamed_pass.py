"""One frame's streamed pass of the network over its query patches.

Patches that hold unknown pixels are encoded once; their compact context features (key,
value, regions at 1/8) serve as queries and as context for the others (the pool rule is
in :mod:`.pool`). Small frames (at most ``pool + 1`` query patches) are encoded up front;
larger frames are streamed in patch rows: context features for at most three patch rows
plus a reservoir of ``pool`` patches, decoder features for two patch rows.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import Cancelled
from .bank import FeatureBank
from .context import score_candidates, select_top_k
from .network import make_input
from .pool import NEIGHBOUR_ROWS, candidates, thin
from .regions import max_unknown_cells


class StreamedPass:
    """One frame's streamed pass over the query patches (see the module docstring)."""

    def __init__(self, eng, grid, image, trimap, prior, queries, acc, progress, cancel):
        self.eng, self.grid, self.acc = eng, grid, acc
        self.image, self.trimap, self.prior = image, trimap, prior
        self.queries, self.progress, self.cancel = queries, progress, cancel
        self.small = len(queries) <= eng.pool + 1
        self.ctx = FeatureBank()  # cell -> compact context features
        self.pending: dict = {}  # patch row -> [(cells, batched decoder features)], until decoded
        self.reservoir: list = []
        self.done = 0

    def _check_cancel(self):
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled")

    def run(self):
        rows = sorted({r for r, _ in self.queries})
        by_row = {r: [q for q in self.queries if q[0] == r] for r in rows}
        if self.small:
            # all queries are candidates of each other: encode them all, decode batch by batch
            self._encode(self.queries, key=-1)
            for cells, feats in self.pending.pop(-1, []):
                self._decode(cells, feats)
            return
        for i, r in enumerate(rows):
            for rr in rows[i:i + 2]:
                if rr not in self.pending:
                    self._encode(by_row[rr], key=rr)
            for cells, feats in self.pending.pop(r):
                self._decode(cells, feats)
            self._retire(rows, i)

    def _retire(self, rows, i):
        """Row i is decoded: cells out of reach of the next query row move to the reservoir."""
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        stale = [cell for cell in self.ctx if nxt is None or cell[0] < nxt - NEIGHBOUR_ROWS]
        for cell in sorted(stale):
            if cell not in self.reservoir:
                self.reservoir.append(cell)
        self.reservoir = thin(self.reservoir, self.eng.pool)
        self.ctx.keep(set(self.reservoir) | {c for c in self.ctx if c not in stale})

    def _inputs(self, cells):
        eng, g = self.eng, self.grid
        img = np.stack([g.extract(self.image, r, c) for r, c in cells])
        tri = np.stack([g.extract(self.trimap, r, c) for r, c in cells])
        t_img = torch.from_numpy(img).permute(0, 3, 1, 2).to(eng.device)
        t_tri = torch.from_numpy(tri)[:, None].to(eng.device)
        t_pri = None
        if self.prior is not None:
            t_pri = torch.from_numpy(np.stack([g.extract(self.prior, r, c) for r, c in cells]))[:, None].to(eng.device)
        return make_input(t_img, t_tri, t_pri, eng.cfg), t_tri, t_pri, max_unknown_cells(tri)

    def _encode(self, cells, key):
        """Encode ``cells`` in batches; keep decoder features batched (no re-stacking)."""
        net, b = self.eng.net, self.eng.batch
        batches = self.pending.setdefault(key, [])
        for s in range(0, len(cells), b):
            self._check_cancel()
            chunk = cells[s:s + b]
            x, tri, pri, max_unknown = self._inputs(chunk)
            with self.eng.stage("encode"):
                feats = net.encode(x)
            with self.eng.stage("cpc"):
                ctx = net.context_features(feats, tri)
            self.ctx.add(chunk, ctx)
            feats["x"], feats["prior"], feats["max_unknown"] = x, pri, max_unknown
            batches.append((chunk, feats))

    def _select(self, chunk):
        """Top-K context for each query of ``chunk``: stacked key/value/regions/scores.

        Each distinct candidate's features are stacked once per chunk (queries of a chunk
        share most of their candidates) and gathered by index. Slots left empty (fewer
        valid candidates than K) point at the chunk's first query with zero regions and a
        zero score, so attention gives them exactly zero weight.
        """
        eng = self.eng
        cands = [candidates(q, list(self.ctx), self.reservoir, eng.pool, self.small)
                 if eng.context else [] for q in chunk]
        ids = sorted({c for cs in cands for c in cs})
        row = {c: i for i, c in enumerate(ids)}
        ids.append(chunk[0])
        n = max(1, max(len(c) for c in cands))
        dev = eng.device
        slot = torch.tensor([[row[c] for c in cs] + [len(ids) - 1] * (n - len(cs)) for cs in cands],
                            dtype=torch.long, device=dev)
        lengths = torch.tensor([len(cs) for cs in cands], device=dev)
        valid = torch.arange(n, device=dev)[None, :] < lengths[:, None]
        table = self.ctx.gather(ids, ("desc", "key", "value", "regions"))
        desc = table["desc"].float()[slot] * valid[..., None]
        qdesc = self.ctx.gather(chunk, ("qdesc",))["qdesc"].float()
        idx, scores = select_top_k(score_candidates(qdesc, desc, valid), eng.k)
        ok = valid.gather(1, idx)
        chosen = torch.where(ok, slot.gather(1, idx), len(ids) - 1)
        regions = table["regions"][chosen]
        regions = regions * ok.view(*ok.shape, *([1] * (regions.dim() - 2))).to(regions.dtype)
        scores = torch.where(ok, scores, scores.new_zeros(()))
        scores = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return {"key": table["key"][chosen], "value": table["value"][chosen],
                "regions": regions, "scores": scores}

    def _decode(self, chunk, feats):
        eng, g = self.eng, self.grid
        self._check_cancel()
        q_ctx, c_sel = {}, None
        if eng.cfg.uses_context:
            q_ctx = self.ctx.gather(chunk, ("key", "value", "regions"))
            with eng.stage("cpc"):
                c_sel = self._select(chunk)
        with eng.stage("decode"):
            out = eng.net.decode(feats, q_ctx, c_sel, feats["x"], feats["prior"], feats["max_unknown"])
        out = out[:, 0].float().cpu().numpy()
        for j, (r, c) in enumerate(chunk):
            g.accumulate(self.acc, out[j], r, c)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress(self.done, len(self.queries), "patches")
