"""The foreground colour outputs of ``hdmatt matte --foreground [LAYER] / --premultiplied``.

* ``--foreground LAYER`` (default ``fg``) adds the unpremultiplied foreground F as
  ``LAYER.R``, ``LAYER.G``, ``LAYER.B`` to the EXR output, over the plate's data window, in
  the plate's colour space.
* ``--premultiplied`` writes ``alpha * F`` into the R, G, B of the alpha's layer (``R, G, B``
  beside ``A`` for ``--layer rgba``, else ``NAME.R/G/B`` beside ``NAME.alpha``): a ready
  element to merge over a new background.
* PNG/TIFF outputs hold the alpha only: either option with them is refused before anything
  runs (one line, exit 2).

F is estimated in the OCIO config's ``scene_linear`` role (the matting equation holds for
light), premultiplied there, and converted back to the plate's colour space for writing. With
a cache, F is stored beside the alpha (:meth:`FrameCache.foreground_key`).
"""

from __future__ import annotations

from ..errors import UsageError
from ..imaging.writing import check_layer_name
from .cache import FrameCache

__all__ = ["DEFAULT_LAYER", "wants_foreground", "check_foreground_job", "foreground_channels"]

DEFAULT_LAYER = "fg"
# Names Nuke and EXR readers give fixed meanings; a foreground layer there would shadow them.
def wants_foreground(job) -> bool:
    return bool(getattr(job, "foreground", None) or getattr(job, "premultiplied", False))


def check_foreground_job(job, out_format: str, out_path: str, plate=None) -> None:
    """Refuse foreground settings the output cannot hold, before any computation.

    Parameters
    ----------
    job : nuke_hdmatt.shot.plan.MatteJob
    out_format : str
        OpenImageIO format name of the output (``openexr``, ``png``, ``tiff``).
    out_path : str
    plate : nuke_hdmatt.imaging.Plate, optional
        The first frame's plate: a layer name that its file already uses is refused.

    Raises
    ------
    UsageError
    """
    if not wants_foreground(job):
        return
    flag = "--foreground" if job.foreground else "--premultiplied"
    if out_format != "openexr":
        raise UsageError(f"{flag} needs an .exr output; {out_format.upper()} holds the alpha "
                         f"only", path=out_path)
    name = job.foreground
    if not name:
        return
    check_layer_name(name, "--foreground")
    if name == job.layer:
        raise UsageError(f"--foreground {name} is also the alpha's --layer; choose another name")
    if plate is not None:
        for channel in plate.spec.channelnames:
            if channel == name or channel.startswith(name + "."):
                raise UsageError(f"--foreground {name} clashes with the plate's channel "
                                 f"{channel}; choose another layer name", path=plate.path,
                                 channel=channel)


def foreground_channels(job, engine, plate, alpha, colorspace: str, config, *,
                        cache: FrameCache | None, key: str | None, meta: dict,
                        progress=None, cancel=None) -> dict:
    """The channels to write for ``job``'s foreground options (empty without them).

    Parameters
    ----------
    plate : nuke_hdmatt.imaging.Plate
        Its RGB pixels (float32 HxWx3, in ``colorspace``) are what F is solved from.
    alpha : ndarray, float32 (H, W)
    key : str or None
        The frame's alpha cache key (None: no caching).

    Returns
    -------
    dict
        channel name -> float32 (H, W), in the plate's colour space.
    """
    if not wants_foreground(job):
        return {}
    from ..imaging import from_scene_linear, to_scene_linear
    fg_key = None if cache is None or key is None else \
        FrameCache.foreground_key(key, engine.foreground_params())
    fg_lin = cache.get(fg_key) if cache is not None and fg_key else None
    if fg_lin is not None and fg_lin.shape != plate.pixels.shape:
        fg_lin = None
    if fg_lin is None:
        linear = to_scene_linear(plate.pixels, colorspace, config)
        fg_lin = engine.foreground(linear, alpha, progress=progress, cancel=cancel)
        if cache is not None and fg_key:
            try:
                cache.put(fg_key, fg_lin, {**meta, "kind": "foreground"})
            except OSError:
                pass  # a cache problem slows the next run down, never stops this one
    channels = {}
    if job.foreground:
        fg = from_scene_linear(fg_lin, colorspace, config)
        channels.update({f"{job.foreground}.{c}": fg[..., i] for i, c in enumerate("RGB")})
    if job.premultiplied:
        pre = from_scene_linear(fg_lin * alpha[..., None], colorspace, config)
        prefix = "" if job.layer == "rgba" else f"{job.layer}."
        channels.update({f"{prefix}{c}": pre[..., i] for i, c in enumerate("RGB")})
    return channels
