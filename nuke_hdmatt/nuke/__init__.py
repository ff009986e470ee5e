"""Nuke side of HDMatt. Only :mod:`.node` (with :mod:`.export`, :mod:`.generated` and
:mod:`.knobs`, the parts it renders inputs, checks staleness and reads its knobs with) and
:mod:`.prepass` import ``nuke``; the
other modules here are plain stdlib Python (script reading, colour settings, engine process),
so the farm tools and tests use them without Nuke. Nothing here imports torch or numpy."""
