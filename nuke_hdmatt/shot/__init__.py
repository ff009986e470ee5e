"""A shot's frames: plan them, cache them, run the engine on them, report progress.

``plan`` resolves a shot's frames, inputs and outputs; ``matte`` mattes each planned frame
(read -> colour -> trimap -> cache -> engine -> write); ``workflow`` is what ``hdmatt
matte``, ``hdmatt demo`` and a farm chunk have in common around it (loading the engine,
opening the cache, signals); ``cache`` the content-addressed per-frame cache; ``progress``
progress, ETA and the JSON log; ``foreground_layers`` the foreground colour outputs. Below
the command line, above the engine and the imaging layer.
"""
