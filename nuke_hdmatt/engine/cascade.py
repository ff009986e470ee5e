"""The prior the full-resolution pass starts from, and how far it may move from it.

``prior="cascade"`` (the default): the network on the frame downsampled to
``prior_max_side`` (with the global classical prior there; flip-averaged as a frame of that
size is, :attr:`.settings.InferenceSettings.flip`); its alpha enlarged by guided
upsampling (the full-resolution plate's colours put back edges the coarse alpha blurred);
then the full-resolution pass, moved only part of the way from that prior to its answer.
Trained on classical priors, the network over-corrects its own, sharper one: undamped, the
full-resolution pass loses to the prior it starts from. ``detail`` (``hdmatt matte
--detail``) says how far: ``auto`` (the default) predicts the step per pixel with the
weights' detail model (:mod:`.detail`, whose snap head may also carry a pixel on to 0 or
1; a fixed quarter step for weights without one), a
number is one step for every pixel (0 keeps the enlarged 1024 px alpha and skips the
full-resolution pass, 1 takes the pass whole); docs/ENGINE.md, "The cascade step", has the
measurements. Frames within ``prior_max_side`` get the global prior and the whole step.

The other modes (:data:`.settings.PRIOR_METHODS`) solve the classical prior alone and take the
whole step.
"""

from __future__ import annotations

import warnings

import numpy as np

from .guided import guided_upsample
from .prior import compute_prior, downsample

_UNSET = object()


def prior_and_step(eng, image, trimap, frame, cancel, small=_UNSET, plans=None):
    """(prior, step) for engine ``eng``: its full-resolution pass moves alpha ``step`` (a
    number, or a :class:`.detail.DetailModel` predicting it per pixel) of the way from the
    prior to the network's answer. ``frame``: the frame's
    :class:`.frame_progress.FrameProgress` (parts ``prior`` and ``coarse patches``);
    ``small``: the frame as :func:`.prior.downsample` gives it, and ``plans`` the coarse
    passes' (``Engine._pass_plans``), when already made."""
    if eng.prior != "cascade":
        return classical_prior(eng, image, trimap, eng.prior, frame.part("prior"), cancel), 1.0
    if small is _UNSET:
        small = downsample(image, trimap, eng.prior_max_side)
    if small is None:
        return classical_prior(eng, image, trimap, "global", cancel=cancel), 1.0
    coarse_prior = classical_prior(eng, *small, "global", cancel=cancel)
    coarse = eng._network(*small, coarse_prior, frame, cancel, "coarse patches", plans)
    with eng.stage("upsample"):
        up = guided_upsample(coarse, small[0], image, trimap, device=eng.device)
    return up, eng.detail


def classical_prior(eng, image, trimap, method, progress=None, cancel=None):
    """The classical prior; a solve that fails (no convergence on a degenerate frame such
    as a 1-pixel strip) falls back to the trimap-based prior of training (0.5 over the
    unknown region), with a warning: the network still gives an alpha."""
    try:
        with eng.stage("prior"):
            return compute_prior(image, trimap, method, eng.prior_max_side, eng.patch,
                                 eng.overlap, progress, cancel, eng.cfg.prior_solver, eng.device)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        h, w = trimap.shape
        warnings.warn(f"classical prior failed on the {w}x{h} frame "
                      f"({' '.join(str(exc).split())}); using the trimap-based prior",
                      RuntimeWarning, stacklevel=3)
        out = trimap.astype(np.float32)
        out[trimap == 0.5] = 0.5
        return out
