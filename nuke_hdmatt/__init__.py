"""nuke_hdmatt: high-resolution deep image matting (HDMatt) for Nuke and the farm.

Importing the package never imports torch: the Nuke side (``nuke_hdmatt.nuke``)
runs inside Nuke's own Python, which must not load pip torch.
"""

__version__ = "0.6.1"
ENGINE_VERSION = __version__     # in every cache key: bump it when the engine's alphas change
