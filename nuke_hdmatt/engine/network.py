"""HDMatt network: encoder, cross-patch context (CPC + TGNL), decoder.

The forward pass is split so inference can encode a frame's patches once for their compact
context features and decode each query against the others' (see ``streamed_pass``):

    feats = net.encode(x)                 # x: (B, C, H, W) = RGB, trimap[, prior]
    ctx   = net.context_features(feats, trimap)
    alpha = net.decode(feats, ctx_q, contexts, x)
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .context import context_descriptor, query_descriptor, score_candidates, select_top_k
from .decoder import Decoder
from .encoder import Encoder
from .regions import region_masks
from .tgnl import context_attention


def make_input(image: torch.Tensor, trimap: torch.Tensor, prior: torch.Tensor | None,
               cfg: ModelConfig) -> torch.Tensor:
    """(B,3,H,W) sRGB 0-1, (B,1,H,W) trimap, (B,1,H,W) prior -> network input.

    Image is centred to about [-1, 1]; trimap and prior likewise."""
    parts = [image * 2 - 1, trimap * 2 - 1]
    if cfg.uses_prior:
        if prior is None:
            raise ValueError("variant D needs a prior alpha")
        parts.append(prior * 2 - 1)
    return torch.cat(parts, dim=1)


class HDMattNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        ctx_channels = 0
        if cfg.uses_context:
            self.key = nn.Conv2d(cfg.aspp_width, cfg.key_dim, 1)
            self.value = nn.Conv2d(cfg.aspp_width, cfg.value_dim, 1)
            ctx_channels = cfg.value_dim * (3 if cfg.variant in ("C", "D") else 1)
        self.decoder = Decoder(cfg, ctx_channels)

    # --- building blocks used by inference and training -------------------------------
    def encode(self, x: torch.Tensor, deep: torch.Tensor | None = None) -> dict:
        """Skips and ``deep`` features of ``x``; ``deep`` kept from an earlier encode of the
        same ``x`` is reused, not recomputed (see :class:`.encoder.Encoder`)."""
        return self.encoder(x, deep)

    def context_features(self, feats: dict, trimap: torch.Tensor) -> dict:
        """Compact per-patch features used as context: key, value, regions, descriptor."""
        if not self.cfg.uses_context:
            return {}
        key = self.key(feats["deep"])
        value = self.value(feats["deep"])
        regions = region_masks(trimap)
        return {"key": key, "value": value, "regions": regions,
                "desc": context_descriptor(key), "qdesc": query_descriptor(key, regions[:, :1])}

    def select(self, qdesc: torch.Tensor, cand_desc: torch.Tensor, valid: torch.Tensor):
        """CPC sampling: scores over (B, N) candidates -> top-K indices and their scores."""
        scores = score_candidates(qdesc, cand_desc, valid)
        return select_top_k(scores, self.cfg.k)

    def decode(self, feats: dict, q_ctx: dict, c_ctx: dict | None, x: torch.Tensor,
               prior: torch.Tensor | None = None, max_unknown: int | None = None,
               tiles: torch.Tensor | None = None) -> torch.Tensor:
        """Alpha (B, 1, H, W) for query patches.

        c_ctx: {"key": (B,K,Dk,h,w), "value": (B,K,Dv,h,w), "regions": (B,K,3,h,w),
        "scores": (B,K)} for the selected context patches, or None (variant A).
        max_unknown: an upper bound on any query's unknown feature cells (see TGNL).
        tiles: the tiles whose alpha is wanted (see :class:`.decoder.Decoder`), or None.
        """
        context = None
        if self.cfg.uses_context:
            assert c_ctx is not None
            context = context_attention(
                q_ctx["key"], q_ctx["value"], q_ctx["regions"][:, :1],
                c_ctx["key"], c_ctx["value"], c_ctx["regions"], c_ctx.get("scores"),
                guided=self.cfg.variant in ("C", "D"), max_unknown=max_unknown)
        return self.decoder(feats["deep"], context, feats, x, prior, tiles)

    # --- a whole training step's forward ---------------------------------------------
    def forward(self, x: torch.Tensor, trimap: torch.Tensor, prior: torch.Tensor | None,
                cx: torch.Tensor | None = None, ctrimap: torch.Tensor | None = None,
                context_grad: bool = False) -> torch.Tensor:
        """Queries x (B,C,H,W) with candidate contexts cx (B,N,C,H,W) from the same image.

        Candidates are scored, the top-K kept, and TGNL applied. Context patches are
        encoded without gradient unless ``context_grad`` (their key/value embeddings
        still receive gradient: the embeddings are shared with the query side).
        """
        feats = self.encode(x)
        q_ctx = self.context_features(feats, trimap)
        c_sel = None
        if self.cfg.uses_context:
            assert cx is not None and ctrimap is not None
            b, n = cx.shape[:2]
            with torch.set_grad_enabled(context_grad and torch.is_grad_enabled()):
                deep = self.encode(cx.flatten(0, 1))["deep"]
            key = self.key(deep)
            value = self.value(deep)
            regions = region_masks(ctrimap.flatten(0, 1))
            desc = context_descriptor(key).view(b, n, -1)
            valid = torch.ones(b, n, dtype=torch.bool, device=x.device)
            idx, scores = self.select(q_ctx["qdesc"], desc, valid)
            gather = lambda t: t.view(b, n, *t.shape[1:])[torch.arange(b, device=x.device)[:, None], idx]
            c_sel = {"key": gather(key), "value": gather(value), "regions": gather(regions),
                     "scores": scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-6)}
        return self.decode(feats, q_ctx, c_sel, x, prior)
