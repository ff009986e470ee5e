"""The shipped weights load by default and give a sane alpha on a real held-out image.

Bound: on GT02 (validation split, never trained on) with trimap1, the model's SAD must be
below 0.4 x the SAD of filling the unknown region with 0.5 (the fill scores ~40 there;
closed-form matting ~4.3), and no worse than 1.25 x closed-form's.
"""

from pathlib import Path

import numpy as np
import pytest

from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS, DEFAULT_NAME, MODEL_DIR, load_network
from nuke_hdmatt.metrics import sad

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def test_bundled_weights_exist_and_carry_their_configuration():
    path = MODEL_DIR / DEFAULT_NAME
    assert path.exists(), "nuke_hdmatt/model/hdmatt.safetensors must be shipped"
    net, info = load_network(path)
    assert net.cfg.variant in "ABCD" and "step" in info


def test_bundled_weights_carry_the_detail_model_fitted_to_them():
    """A retrained hdmatt.safetensors without a refitted detail file would fall back to the
    fixed step without a word: the shipped pair must match."""
    from nuke_hdmatt.engine.detail import DetailModel
    from nuke_hdmatt.engine.weights import load_detail_model, verified_sha256
    path = MODEL_DIR / DEFAULT_NAME
    model, digest = load_detail_model(path, verified_sha256(path))
    assert isinstance(model, DetailModel) and len(digest) == 64


@pytest.mark.skipif(not DATA.exists(), reason=f"real dev images not found at {DATA}")
def test_bundled_weights_give_a_sane_alpha_on_a_held_out_image():
    import torch
    torch.set_num_threads(2)
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.engine.prior import global_prior
    image, trimap, gt = load_case(DATA, "GT02", "trimap1")
    eng = Engine.load(device="cpu")  # the default: the weights shipped in the package
    assert eng.weights_path == BUNDLED_WEIGHTS == MODEL_DIR / DEFAULT_NAME
    assert eng.weights_id == "hdmatt" and len(eng.weights_sha256) == 64
    alpha = eng.matte(image, trimap)
    fill = np.where(trimap == 0.5, 0.5, trimap)
    model_sad, fill_sad = sad(alpha, gt, trimap), sad(fill, gt, trimap)
    cf_sad = sad(global_prior(image, trimap), gt, trimap)
    assert model_sad < 0.4 * fill_sad, (model_sad, fill_sad)
    assert model_sad <= 1.25 * cf_sad, (model_sad, cf_sad)
    known = trimap != 0.5
    np.testing.assert_array_equal(alpha[known], trimap[known])


@pytest.mark.skipif(not DATA.exists(), reason=f"real dev images not found at {DATA}")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_autocast_stays_close_to_fp32_on_the_cpu(precision):
    # The same autocast as on a GPU, emulated on the CPU (tests/test_engine_cuda.py checks the
    # GPU itself): before the encoder's stem ran in float32, bf16 and fp16 moved single
    # alphas by 0.034 / 0.032 here (max-pool indices tied by the coarse mantissa).
    import torch
    torch.set_num_threads(2)
    from nuke_hdmatt.devset import load_case
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.engine.prior import solve
    image, trimap, gt = load_case(DATA, "GT02", "trimap1")
    image, trimap, gt = image[:400, :500], trimap[:400, :500], gt[:400, :500]
    prior = solve(image, trimap, "cf+sm")
    fp32 = Engine.load(device="cpu", precision="fp32").matte(image, trimap, prior=prior)
    low = Engine.load(device="cpu", precision=precision).matte(image, trimap, prior=prior)
    assert np.isfinite(low).all()
    assert float(np.abs(low - fp32).max()) <= 0.02
    assert abs(sad(low, gt, trimap) - sad(fp32, gt, trimap)) <= 0.01 * sad(fp32, gt, trimap)
