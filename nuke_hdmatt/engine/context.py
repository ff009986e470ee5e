"""Cross-Patch Context: context patch sampling (paper eq. 1-2).

The correlation h(q_U, c_i) = sum_{s,s'} q_U[s] . c_i[s'] factorises into
(sum_s q_U[s]) . (sum_s' c_i[s']). We use means instead of sums (and scale by
1/sqrt(d)) so the softmax temperature does not depend on the patch size or on
how much of the query is unknown.

That temperature is what the shipped weights were trained with, and it leaves the softmax
nearly flat: on three dev images at 800 px (5 candidates) and a 3355x2315 composite
(26 candidates on average) the largest score equals 1/N to four decimals (at most 0.09 for
1/N = 0.045), so the ranking picks the top-K while the log-score bias in TGNL carries
almost nothing. A sharper temperature changes what the network sees: retrain with it,
do not switch it under the shipped weights.
"""

from __future__ import annotations

import math

import torch


def query_descriptor(key: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """Mean key over the query's unknown cells.

    key (B, D, h, w); unknown (B, 1, h, w) bool -> (B, D). A query with no unknown
    cell gives a zero descriptor (uniform scores).
    """
    m = unknown.to(key.dtype)
    return (key * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp_min(1.0)


def context_descriptor(key: torch.Tensor) -> torch.Tensor:
    """Mean key over all cells of a candidate: (B, D, h, w) -> (B, D)."""
    return key.mean(dim=(2, 3))


def score_candidates(query_desc: torch.Tensor, cand_desc: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax scores d_i over candidates.

    query_desc (B, D); cand_desc (B, N, D); valid (B, N) bool or None.
    Returns (B, N) probabilities, exactly zero on invalid candidates.
    """
    with torch.autocast(query_desc.device.type, enabled=False):      # float32, as in TGNL
        logits = torch.einsum("bd,bnd->bn", query_desc.float() / math.sqrt(query_desc.shape[1]),
                              cand_desc.float())
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
        all_invalid = ~valid.any(dim=1, keepdim=True)
        logits = logits.masked_fill(all_invalid, 0.0)
        probs = torch.softmax(logits, dim=1) * valid
        return probs
    return torch.softmax(logits, dim=1)


def select_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K candidates per query: (B, N) -> (indices (B, k'), scores (B, k')), k' = min(k, N).

    Ties break towards the lower index (stable, deterministic)."""
    k = min(k, scores.shape[1])
    vals, idx = torch.sort(scores, dim=1, descending=True, stable=True)
    return idx[:, :k], vals[:, :k]
