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


def region_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     regions: torch.Tensor, bias: torch.Tensor | None = None,
                     valid: torch.Tensor | None = None, sliced: bool | None = None) -> torch.Tensor:
    """Attention of each query row over each region's positions, for disjoint regions.

    q (B, n, Dk) already scaled by 1/sqrt(Dk); keys (B, M, Dk); values (B, M, D); regions
    (B, R, M) bool, at most one region true at each position (a position in none is attended
    by none); bias (B, M) added to every row's logits; valid (B, n) bool: rows that matter
    (the others may hold anything). The logits q.k are taken in float32 whatever the autocast
    dtype (keys of a few hundred summed over 64 channels overflow fp16 before any scaling).
    Returns float32 (B, n, R, D): for region r, ``softmax(logits[..., r's positions]) @
    values[r's positions]``, exactly zero where region r is empty.

    Two ways to the same numbers (``sliced``: default on the CPU):

    * sliced, for the CPU: each batch item's regions are gathered to contiguous keys and
      values and each region gets its own softmax and product, over its valid rows only;
      a position's value enters one product, not R.
    * fused, for GPUs (no host reads, a fixed number of kernels): one exp over the whole
      logits serves every region, each position shifted by its own region's row maximum
      (what that region's softmax would subtract); one product with the values and region
      indicators stacked gives every region's weighted sum and its normaliser.

    Both replace R masked softmaxes over the whole (n, M) logits (~9 passes each: 2/3 of a 6K
    frame's decode time on the CPU).
    """
    if sliced is None:
        sliced = q.device.type == "cpu"
    return (_sliced if sliced else _fused)(q, keys, values, regions, bias, valid)


def _logits(q, keys, bias):
    with torch.autocast(q.device.type, enabled=False):
        logits = torch.matmul(q.float(), keys.float().transpose(-1, -2))
    return logits if bias is None else logits + bias.float().unsqueeze(-2)


def _sliced(q, keys, values, regions, bias, valid):
    b, n, _ = q.shape
    r, d = regions.shape[1], values.shape[2]
    items = []
    for i in range(b):
        rows = n if valid is None else int(valid[i].sum())
        per_region = []
        for j in range(r):
            cols = regions[i, j].nonzero().squeeze(1)
            if rows == 0 or len(cols) == 0:
                per_region.append(q.new_zeros((n, d), dtype=torch.float32))
                continue
            logits = _logits(q[i, :rows], keys[i, cols], None if bias is None else bias[i, cols])
            out = (torch.softmax(logits, dim=-1) @ values[i, cols].float()).float()
            per_region.append(torch.cat([out, out.new_zeros((n - rows, d))]) if rows < n else out)
        items.append(torch.stack(per_region, dim=1))
    return torch.stack(items)


def _fused(q, keys, values, regions, bias, valid):
    b, n, _ = q.shape
    m = keys.shape[1]
    r, d = regions.shape[1], values.shape[2]
    ind = regions.float()                                                   # (B, R, M)
    # each position's region, R for none (a scratch slot nothing reads back)
    col = torch.where(regions.any(dim=1), regions.to(torch.uint8).argmax(dim=1), r)
    col = col[:, None, :].expand(b, n, m)
    logits = _logits(q, keys, bias)
    top = logits.new_full((b, n, r + 1), float("-inf")).scatter_reduce_(
        2, col, logits.detach(), "amax")
    weights = (logits - top.gather(2, col)).exp_()                          # (B, n, M)
    per_region = (values.float()[:, None] * ind[..., None]).permute(0, 2, 1, 3)   # (B, M, R, D)
    rhs = torch.cat([per_region.reshape(b, m, r * d), ind.transpose(1, 2)], dim=2)
    prod = torch.bmm(weights, rhs).float()       # autocast may run the product in fp16
    sums = prod[..., r * d:].clamp_min(1e-30)              # an empty region: 0 / tiny = 0
    return prod[..., :r * d].view(b, n, r, d) / sums[..., None]


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
    bias = None
    if c_scores is not None:
        bias = torch.log(c_scores.float().clamp_min(1e-6)).repeat_interleave(m, dim=1)
    regions = c_regions.permute(0, 2, 1, 3, 4).reshape(b, 3, -1)      # (B, 3, K*M)
    if not guided:
        regions = regions.any(dim=1, keepdim=True)
    attended = vq[:, :, None, :] + region_attention(q.float() / math.sqrt(dk), ck, cv, regions,
                                                    bias, valid)      # (B, n, R, Dv)
    sel = attended.flatten(2) * valid[..., None].float()              # (B, n, C)
    out = torch.zeros(b, h * w, sel.shape[2], dtype=sel.dtype, device=sel.device)
    out.scatter_(1, rows[..., None].expand(-1, -1, sel.shape[2]), sel)
    return out.transpose(1, 2).reshape(b, -1, h, w).to(q_value.dtype)
