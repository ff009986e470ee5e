"""Compact context features of a frame's encoded patches, one row a patch, in device tensors.

Pass 1 of :mod:`.streamed_pass` fills the bank with every encoded patch's key, value,
regions and descriptors; pass 2 fetches the candidates of a batch of queries with one
indexing op per kind, not patch by patch.
"""

from __future__ import annotations

import torch


class FeatureBank:
    """cell -> row in per-kind tensors; iterates over its cells in insertion order."""

    def __init__(self):
        self.slots: dict = {}
        self.store: dict[str, torch.Tensor] = {}

    def __len__(self):
        return len(self.slots)

    def __iter__(self):
        return iter(self.slots)

    def __contains__(self, cell):
        return cell in self.slots

    def _grow(self, need: int, exact: bool = False):
        cap = next(iter(self.store.values())).shape[0]
        if len(self.slots) + need <= cap:
            return
        new_cap = len(self.slots) + need if exact else max(2 * cap, len(self.slots) + need, 8)
        for k, v in self.store.items():
            grown = v.new_zeros((new_cap,) + v.shape[1:])
            grown[:cap] = v
            self.store[k] = grown

    def reserve(self, n: int):
        """Room for ``n`` patches in all (once the first batch has set shapes and dtypes), so
        a frame whose size is known up front is stored without regrowing."""
        if self.store:
            self._grow(n - len(self.slots), exact=True)

    def add(self, cells: list, feats: dict):
        """Store row j of each ``feats`` tensor (B, ...) as cell ``cells[j]``."""
        if not self.store:
            self.store = {k: v.new_zeros((0,) + v.shape[1:]) for k, v in feats.items()}
        self._grow(len(cells))
        first = len(self.slots)
        for k, v in feats.items():
            self.store[k][first:first + len(cells)] = v
        self.slots.update((c, first + j) for j, c in enumerate(cells))

    def rows(self, cells: list, device) -> torch.Tensor:
        """Row indices of ``cells`` as a long tensor on ``device``."""
        return torch.tensor([self.slots[c] for c in cells], dtype=torch.long, device=device)

    def gather(self, cells: list, keys) -> dict:
        """{key: (len(cells), ...)} for ``cells`` in order."""
        index = self.rows(cells, next(iter(self.store.values())).device)
        return {k: self.store[k][index] for k in keys}
