"""Which patches are encoded as context, and which of them each query may choose from.

Encode first, decode second (:mod:`.streamed_pass`): every patch that holds unknown
pixels is a query and a context candidate; so is a patch with only foreground and
background pixels that shares an edge with a query lacking a region it offers
(:func:`border_cells`): where the unknown region is large, a query may hold no whole
foreground or background feature cell, and the clean patch beside it is then the nearest
F or B sample for TGNL's U-F or U-B branch. A query already holds the overlap strip it
shares with a clean neighbour, so that neighbour offers something new only where the
strip holds no whole cell of its regions (F and B pixels finer than a feature cell). On
plates with an unknown band that is the exception: on the full-resolution composites of
``benchmarks/highres_strategies.py`` encoding every clean neighbour as well changed no
mean metric by more than 0.2 % and cost 20-40 % of the encoder's time
(``benchmarks/RESULTS.md``, border patches).

Each query then chooses its top-K context from ``n`` candidates (``pool``, 30 by default
as in the paper) picked over the whole frame by :func:`candidates`:

* all the other encoded patches when there are at most ``n`` (in raster order);
* else its nearest ``min(NEAR, n // 2)`` patches, then one patch from each of the remaining
  ``n - near`` strata of the other patches sorted by distance (equal-count runs, so the
  strata reach the farthest patch of the frame in every direction), within a stratum the
  patch farthest from those already chosen (spread over positions, not bunched on one side).

The rule reads only cell coordinates: it does not depend on the order cells were encoded
in, and it accepts any coordinates (grid cells here; training's crop positions in a
composite), so inference and training choose context the same way. Ties break by
distance, then raster order.
"""

from __future__ import annotations

import numpy as np

NEAR = 8
"""Nearest candidates kept before the frame-wide strata: the ring of grid cells around a
query (capped at half the pool so the strata keep at least half)."""


def border_cells(queries, grid_shape: tuple[int, int], regions=None) -> list:
    """Grid cells sharing an edge with a query cell that are not queries themselves (they
    hold only F and B pixels), inside a ``(rows, cols)`` grid, in raster order.

    ``regions(cell)``: the clean regions a cell's patch holds
    (:func:`.regions.clean_regions`); given, a cell is kept only if it holds one that a
    query it borders lacks."""
    rows, cols = grid_shape
    qs = set(queries)
    out = []
    for cell in sorted({n for q in qs for n in _sides(q)} - qs):
        if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
            continue
        if regions is None or any(regions(cell) - regions(q) for q in _sides(cell) if q in qs):
            out.append(cell)
    return out


def _sides(cell) -> list:
    r, c = cell
    return [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]


def candidates(query, encoded, n: int) -> list:
    """Up to ``n`` context candidates for ``query`` among ``encoded`` (see the module
    docstring). Cells are (row, col) pairs of any numbers; ``query`` itself is never a
    candidate; the result is the same whatever order ``encoded`` comes in."""
    query = tuple(query)
    others = sorted({tuple(e) for e in encoded} - {query})
    if len(others) <= n:
        return others
    pts = np.asarray(others, dtype=np.float64)
    dist = np.hypot(*(pts - np.asarray(query, dtype=np.float64)).T)
    order = np.lexsort((pts[:, 1], pts[:, 0], dist))        # by distance, ties in raster order
    near = max(1, min(NEAR, n // 2))    # one candidate: the nearest, not the farthest
    chosen = list(order[:near])
    rest = order[near:]
    # distance from each cell to the nearest of the query and the chosen cells
    gap = dist.copy()
    for i in chosen:
        gap = np.minimum(gap, np.hypot(*(pts - pts[i]).T))
    strata = n - near
    if not strata:
        return [others[i] for i in chosen]
    bounds = [i * len(rest) // strata for i in range(strata + 1)]
    for a, b in zip(bounds, bounds[1:]):
        run = rest[a:b]
        pick = run[int(np.argmax(gap[run]))]                # first of equals: nearer, then raster
        chosen.append(pick)
        gap = np.minimum(gap, np.hypot(*(pts - pts[pick]).T))
    return [others[i] for i in chosen]
