"""The ``--exposure`` setting (the node's *exposure* knob): how the plate's exposure is set
for the network. Standard library only: the Nuke side checks its knob with the same words.

``fit`` fits each frame's exposure to its unknown band (``imaging.colour.exposure_gain``);
``off`` converts every frame as it is; a number of stops changes every frame's exposure by
that much (one exposure for the whole shot).
"""

from __future__ import annotations

import math

EXPOSURES = ("fit", "off")
MAX_STOPS = 20.0


def exposure_value(text: str) -> str:
    """``fit``, ``off`` or stops (-20 to 20, negative darker), as canonical text.

    Raises
    ------
    ValueError
        Anything else (argparse's type errors name the option).
    """
    word = str(text).strip().lower()
    if word in EXPOSURES:
        return word
    try:
        stops = float(word)
    except ValueError:
        stops = math.nan
    if not abs(stops) <= MAX_STOPS:  # nan too
        raise ValueError(f"{text!r}: give fit, off or stops from -{MAX_STOPS:g} to "
                         f"{MAX_STOPS:g} (negative: darker)")
    return f"{stops + 0.0:g}"  # -0 is 0
