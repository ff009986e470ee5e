"""Nuke side of HDMatt. Only :mod:`.node` (with :mod:`.export` and :mod:`.generated`, the
parts it renders inputs and checks staleness with) and :mod:`.prepass` import ``nuke``; the
other modules here are plain stdlib Python (script reading, colour settings, engine process),
so the farm tools and tests use them without Nuke. Nothing here imports torch or numpy."""
