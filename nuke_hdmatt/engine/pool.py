"""Which patches serve as context for which query (the context pool rule).

Only patches that hold unknown pixels are encoded (the others are copied from the
trimap and never go through the network); each encoded patch is a query and a
context candidate for the others. The unknown band lies between foreground and
background, so these patches carry the F and B regions TGNL needs.

* Small frames (at most ``pool + 1`` query patches): every other query patch is a
  candidate, and all are encoded up front.
* Larger frames are streamed in patch rows so memory stays bounded: a query's
  candidates are its encoded neighbours within one row and two columns (nearest
  first), then a spread sample of patches from rows already passed (a reservoir
  thinned to every other entry whenever it outgrows ``pool``), up to ``pool`` in all.
"""

from __future__ import annotations

NEIGHBOUR_ROWS = 1
NEIGHBOUR_COLS = 2


def neighbours(cell, encoded) -> list:
    """Encoded cells near ``cell`` (excluding it), nearest first; ties in raster order."""
    r, c = cell
    near = [e for e in encoded if e != cell
            and abs(e[0] - r) <= NEIGHBOUR_ROWS and abs(e[1] - c) <= NEIGHBOUR_COLS]
    return sorted(near, key=lambda e: ((e[0] - r) ** 2 + (e[1] - c) ** 2, e))


def spread(items: list, n: int) -> list:
    """``n`` items evenly spaced through ``items`` (all of them if there are fewer)."""
    if n <= 0:
        return []
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def candidates(cell, encoded, reservoir: list, pool: int, small: bool) -> list:
    """Context candidates for query ``cell``: see the module docstring."""
    if small:
        return [e for e in sorted(encoded) if e != cell]
    near = neighbours(cell, encoded)[:pool]
    far = [e for e in reservoir if e not in near and e != cell]
    return near + spread(far, pool - len(near))


def thin(reservoir: list, pool: int) -> list:
    """Keep every other entry until the reservoir fits ``pool`` (keeps spatial spread)."""
    while len(reservoir) > pool:
        reservoir = reservoir[::2]
    return reservoir
