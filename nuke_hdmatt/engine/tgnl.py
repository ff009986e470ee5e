"""Trimap-Guided Non-Local attention (paper eq. 3) and the plain non-local of variant B.

For each region R in {U, F, B} of the K context patches, every unknown query
position attends over all context positions in R:
    f_R[s] = v_qU[s] + sum_{i,s'} softmax_{i,s' in R}(q_U[s] . c_{i,R}[s']) v_{c_i,R}[s']
Masked positions get exactly zero weight; a region absent from every context
patch contributes nothing (f_R = v_qU), never NaN.

The context-sampling scores d_i enter as a log-bias on each patch's logits, so
patch selection stays differentiable (the paper keeps only the top-K; the bias
lets the key embedding learn which patches help).
"""

from __future__ import annotations

import math

import torch


def masked_attention(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``; rows with no valid entry are all zero.

    logits (..., M) any float dtype; mask (..., M) bool, broadcastable. Returns float32.
    """
    logits = logits.float()
    neg = torch.finfo(torch.float32).min
    weights = torch.softmax(logits.masked_fill(~mask, neg), dim=-1) * mask
    # renormalise: exact zeros stay zero, an all-masked row stays zero (0 / tiny)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-30)


def _unknown_rows(q_unknown: torch.Tensor, n: int | None = None):
    """Indices (B, n) of each query's unknown cells, padded with 0, and their validity mask.
    ``n``: at least the largest count of unknown cells (the caller may know it without
    reading the device); else it is read from ``q_unknown`` (a host sync)."""
    u = q_unknown.flatten(1)                                           # (B, N) bool
    n = min(u.shape[1], max(1, n)) if n is not None else max(1, int(u.sum(dim=1).max()))
    # stable sort puts unknown cells first, in raster order
    order = torch.sort((~u).to(torch.int8), dim=1, stable=True).indices[:, :n]
    valid = torch.gather(u, 1, order)
    return order, valid


def context_attention(q_key: torch.Tensor, q_value: torch.Tensor, q_unknown: torch.Tensor,
                      c_key: torch.Tensor, c_value: torch.Tensor, c_regions: torch.Tensor,
                      c_scores: torch.Tensor | None, guided: bool,
                      max_unknown: int | None = None) -> torch.Tensor:
    """Non-local context features for a batch of query patches.

    q_key (B, Dk, h, w), q_value (B, Dv, h, w), q_unknown (B, 1, h, w) bool;
    c_key (B, K, Dk, h', w'), c_value (B, K, Dv, h', w'), c_regions (B, K, 3, h', w')
    bool [U, F, B] (all False for a missing context patch); c_scores (B, K) or None.
    Returns (B, 3*Dv, h, w) when ``guided`` (TGNL: f_U, f_F, f_B) else (B, Dv, h, w),
    zero outside the query's unknown cells.

    Only the query's unknown cells attend (the others would be zeroed anyway), which
    makes the cost proportional to the unknown area, not the patch area; ``max_unknown``
    (an upper bound on any query's unknown cells) saves reading that count off the device.

    The logits q.k are taken in float32 whatever the autocast dtype: keys of a few hundred
    summed over 64 channels overflow fp16 before any scaling could help.
    """
    b, dk, h, w = q_key.shape
    _, k, dv = c_value.shape[:3]
    rows, valid = _unknown_rows(q_unknown, max_unknown)                # (B, n)
    q = torch.gather(q_key.flatten(2).transpose(1, 2), 1, rows[..., None].expand(-1, -1, dk))
    vq = torch.gather(q_value.flatten(2).transpose(1, 2), 1, rows[..., None].expand(-1, -1, dv)).float()
    ck = c_key.permute(0, 1, 3, 4, 2).reshape(b, -1, dk)              # (B, K*M, Dk)
    cv = c_value.permute(0, 1, 3, 4, 2).reshape(b, -1, dv).float()   # (B, K*M, Dv)
    m = c_key.shape[3] * c_key.shape[4]
    with torch.autocast(q.device.type, enabled=False):
        logits = torch.bmm(q.float() / math.sqrt(dk), ck.float().transpose(1, 2))   # (B, n, K*M)
    if c_scores is not None:
        bias = torch.log(c_scores.float().clamp_min(1e-6)).repeat_interleave(m, dim=1)
        logits = logits + bias[:, None, :]
    regions = c_regions.permute(0, 2, 1, 3, 4).reshape(b, 3, -1)      # (B, 3, K*M)
    if guided:
        masks = [regions[:, r, None, :] for r in range(3)]
    else:
        masks = [regions.any(dim=1)[:, None, :]]
    outs = [vq + torch.bmm(masked_attention(logits, mask), cv) for mask in masks]
    sel = torch.cat(outs, dim=2) * valid[..., None].float()           # (B, n, C)
    out = torch.zeros(b, h * w, sel.shape[2], dtype=sel.dtype, device=sel.device)
    out.scatter_(1, rows[..., None].expand(-1, -1, sel.shape[2]), sel)
    return out.transpose(1, 2).reshape(b, -1, h, w).to(q_value.dtype)
