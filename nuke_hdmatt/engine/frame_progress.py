"""One forward count of a frame's work, for the caller's progress.

A frame's matte runs several parts in turn, each counting its own steps: the local prior's
cells, the cascade's coarse pass over the 1024 px frame, the full-resolution pass, each
network pass twice with flip averaging, the detail model's tiles. Told to the caller as
they came, the count restarted at every part (the Nuke node's bar ran backwards within a
frame, and an ETA taken from the frame's time so far over the first part's share was off by
20x on a 6K frame).
:class:`FrameProgress` plans the parts when the frame starts, so ``done`` only grows and
``total`` stays fixed; each part keeps its own stage name.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[int, int, str], None]


class FrameProgress:
    """``callback(done, total, stage)`` over planned ``parts``: (stage, steps) in order.

    :meth:`part` hands out the next unclaimed part of a stage as a progress callback of its
    own (``done`` of its ``total`` steps); a part that was not planned reports nothing.
    """

    def __init__(self, callback: Progress | None, parts: list[tuple[str, int]]):
        self.callback = callback
        self.parts = [(stage, max(int(steps), 0)) for stage, steps in parts]
        self.total = sum(steps for _, steps in self.parts)
        self._claimed: set[int] = set()

    def part(self, stage: str) -> Progress | None:
        if self.callback is None:
            return None
        offset = 0
        for i, (name, planned) in enumerate(self.parts):
            if name == stage and i not in self._claimed:
                self._claimed.add(i)
                return self._report(offset, planned, stage)
            offset += planned
        return None

    def _report(self, offset: int, planned: int, stage: str) -> Progress:
        callback = self.callback
        assert callback is not None

        def report(done: int, total: int, _stage: str = "") -> None:
            # a part's own total is its plan; scaled should the two ever differ
            steps = done if total == planned else planned * done // max(total, 1)
            callback(min(offset + max(steps, 0), self.total), self.total, stage)
        return report
