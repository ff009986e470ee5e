"""Compact context features of the encoded patches, one slot a patch, in device tensors.

The streamed pass keeps a few patch rows and a reservoir of patches as context; their
features live in one tensor per kind (key, value, regions, descriptors), so the candidates
of a batch of queries are fetched with one indexing op, not stacked patch by patch.
"""

from __future__ import annotations

import torch


class FeatureBank:
    """cell -> slot in per-kind tensors; iterates over its cells in insertion order."""

    def __init__(self):
        self.slots: dict = {}
        self.store: dict[str, torch.Tensor] = {}
        self.free: list[int] = []

    def __len__(self):
        return len(self.slots)

    def __iter__(self):
        return iter(self.slots)

    def __contains__(self, cell):
        return cell in self.slots

    def _grow(self, need: int):
        cap = next(iter(self.store.values())).shape[0] if self.store else 0
        if len(self.slots) + need <= cap:
            return
        new_cap = max(2 * cap, len(self.slots) + need, 8)
        for k, v in self.store.items():
            grown = v.new_zeros((new_cap,) + v.shape[1:])
            grown[:cap] = v
            self.store[k] = grown
        self.free += list(range(cap, new_cap))

    def add(self, cells: list, feats: dict):
        """Store row j of each ``feats`` tensor (B, ...) as cell ``cells[j]`` (with no
        features, as for a network without context, only the cells are recorded)."""
        if not feats:
            self.slots.update((c, -1) for c in cells)
            return
        if not self.store:
            self.store = {k: v.new_zeros((0,) + v.shape[1:]) for k, v in feats.items()}
        self._grow(len(cells))
        self.free.sort(reverse=True)
        slots = [self.free.pop() for _ in cells]
        index = torch.tensor(slots, device=next(iter(feats.values())).device)
        for k, v in feats.items():
            self.store[k][index] = v
        self.slots.update(zip(cells, slots))

    def keep(self, cells):
        """Forget every cell not in ``cells``."""
        for cell in [c for c in self.slots if c not in cells]:
            slot = self.slots.pop(cell)
            if slot >= 0:
                self.free.append(slot)

    def gather(self, cells: list, keys) -> dict:
        """{key: (len(cells), ...)} for ``cells`` in order."""
        index = torch.tensor([self.slots[c] for c in cells], device=next(iter(self.store.values())).device)
        return {k: self.store[k][index] for k in keys}
