"""The engine on a CUDA device: reduced precision against fp32 on the shipped weights,
finite outputs with large activations, bounded GPU memory at 8K, and the torch prior equal
on the device and the CPU. Skipped without CUDA (run on a GPU machine by
``benchmarks/gpu_check.sh``). Measured numbers are appended, one JSON object a line, to
``$HDMATT_GPU_REPORT`` when it is set."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def report(**row):
    print(json.dumps(row))
    path = os.environ.get("HDMATT_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def plate(h, w, fraction, seed=0):
    """A textured wobbly blob over a textured background; the unknown band around its edge
    holds ``fraction`` of the frame. -> (image, trimap, alpha)."""
    import torch.nn.functional as F
    rng = np.random.default_rng(seed)

    def texture(scale):
        low = torch.from_numpy(rng.random((3, max(2, h // scale), max(2, w // scale)), dtype=np.float32))
        up = F.interpolate(low[None], size=(h, w), mode="bilinear", align_corners=False)
        return up[0].permute(1, 2, 0).numpy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx, r0 = h / 2, w / 2, 0.35 * min(h, w)
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(yy - cy, xx - cx) - r0 * (1 + 0.18 * np.sin(5 * theta) + 0.06 * np.sin(17 * theta + 1))
    alpha = np.clip(0.5 - dist / max(2.0, 0.004 * h), 0, 1).astype(np.float32)
    fg = 0.5 * texture(16) + 0.3
    bg = 0.8 * texture(64) + 0.1 * texture(4)
    image = np.clip(alpha[..., None] * fg + (1 - alpha[..., None]) * bg, 0, 1).astype(np.float32)
    q = float(np.quantile(np.abs(dist), fraction))
    trimap = np.where(dist < 0, 1.0, 0.0).astype(np.float32)
    trimap[np.abs(dist) <= q] = 0.5
    return image, trimap, alpha


def _dev_pair(name="GT02", ts="trimap1"):
    from nuke_hdmatt.devset import load_case
    return load_case(DATA, name, ts)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_matches_fp32_on_the_shipped_weights(precision):
    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.metrics import sad
    if DATA.exists():
        image, trimap, gt = _dev_pair()
    else:
        image, trimap, gt = plate(600, 800, 0.15)
    fp32 = Engine.load(device="cuda", precision="fp32").matte(image, trimap)
    low = Engine.load(device="cuda", precision=precision).matte(image, trimap)
    assert np.isfinite(low).all()
    diff = float(np.abs(low - fp32).max())
    sad32, sad_low = sad(fp32, gt, trimap), sad(low, gt, trimap)
    report(test="precision", precision=precision, max_abs_diff=diff, sad_fp32=sad32, sad=sad_low)
    assert diff <= 0.02
    assert abs(sad_low - sad32) <= 0.01 * sad32


def test_fp16_attention_with_large_activations_is_finite():
    from nuke_hdmatt.engine.tgnl import context_attention
    g = torch.Generator(device="cuda").manual_seed(0)
    b, k, d, h = 2, 3, 64, 40
    q_key = torch.randn(b, d, h, h, device="cuda", generator=g).sign() * 300
    c_key = torch.randn(b, k, d, h, h, device="cuda", generator=g).sign() * 300
    q_val = torch.randn(b, 32, h, h, device="cuda", generator=g) * 100
    c_val = torch.randn(b, k, 32, h, h, device="cuda", generator=g) * 100
    unknown = torch.rand(b, 1, h, h, device="cuda", generator=g) > 0.5
    regions = torch.rand(b, k, 3, h, h, device="cuda", generator=g) > 0.5
    want = context_attention(q_key, q_val, unknown, c_key, c_val, regions, None, True)
    with torch.autocast("cuda", dtype=torch.float16):
        got = context_attention(q_key.half(), q_val.half(), unknown, c_key.half(), c_val.half(),
                                regions, None, True)
    assert torch.isfinite(got).all()
    assert (got.float() - want).abs().max() <= 0.05 * want.abs().max()


def test_fp16_engine_on_a_saturated_plate_is_finite():
    from nuke_hdmatt.engine import Engine
    image, trimap, _ = plate(540, 960, 0.3, seed=1)
    image = np.where(image > 0.5, 1.0, 0.0).astype(np.float32)       # hard, saturated edges
    alpha = Engine.load(device="cuda", precision="fp16").matte(image, trimap)
    assert np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1


def test_peak_gpu_memory_at_8k_is_bounded():
    from nuke_hdmatt.engine import Engine
    image, trimap, _ = plate(4320, 7680, 0.10)
    eng = Engine.load(device="cuda")
    eng.matte(*plate(270, 480, 0.1)[:2])                                  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    alpha = eng.matte(image, trimap)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    report(test="8k_memory", size="7680x4320", unknown=0.10, seconds=seconds, peak_gib=peak,
           device=torch.cuda.get_device_name())
    assert np.isfinite(alpha).all()
    assert peak <= 4.0


@pytest.mark.parametrize("solver", ["cf", "sm"])
def test_the_torch_prior_on_cuda_equals_its_cpu_solve(solver):
    from nuke_hdmatt.engine.prior import solve
    if DATA.exists():
        image, trimap, _ = _dev_pair("GT05")
    else:
        image, trimap, _ = plate(480, 640, 0.1, seed=2)
    t0 = time.perf_counter()
    cpu = solve(image, trimap, solver, device="cpu")
    t1 = time.perf_counter()
    cuda = solve(image, trimap, solver, device="cuda")
    t2 = time.perf_counter()
    u = trimap == 0.5
    mad = float(np.abs(cpu - cuda)[u].mean())
    report(test="prior_cuda_vs_cpu", solver=solver, mean_abs_diff=mad, cpu_s=t1 - t0, cuda_s=t2 - t1)
    assert mad <= 1e-3


def test_the_detail_step_on_cuda_equals_its_cpu_blend():
    from nuke_hdmatt.engine.weights import BUNDLED_WEIGHTS, load_detail_model, verified_sha256
    model, _ = load_detail_model(BUNDLED_WEIGHTS, verified_sha256(BUNDLED_WEIGHTS))
    image, trimap, alpha = plate(1500, 2100, 0.15)
    rng = np.random.default_rng(1)
    coarse = np.clip(alpha + 0.1 * rng.standard_normal(alpha.shape), 0, 1).astype(np.float32)
    full = np.clip(alpha + 0.1 * rng.standard_normal(alpha.shape), 0, 1).astype(np.float32)
    t0 = time.perf_counter()
    on_gpu = model.blend(image, trimap, coarse, full, device="cuda")
    report(test="detail_blend", size="2100x1500", seconds=round(time.perf_counter() - t0, 3))
    np.testing.assert_allclose(on_gpu, model.blend(image, trimap, coarse, full), atol=1e-4)


def test_running_out_of_gpu_memory_is_one_line_and_the_device_recovers():
    """A real CUDA allocation the device cannot hold: the engine's guard retries once, then
    names the device and what is free; the next allocation of a sane size succeeds."""
    from nuke_hdmatt.engine.memory import guarded
    from nuke_hdmatt.errors import OutOfMemory
    dev = torch.device("cuda", torch.cuda.current_device())
    total = torch.cuda.get_device_properties(dev).total_memory
    calls = []

    def too_big():
        calls.append(1)
        return torch.empty(2 * total, dtype=torch.uint8, device=dev)

    with pytest.raises(OutOfMemory, match=r"out of GPU memory on cuda:\d \(\d+\.\d of "
                                          r"\d+\.\d GiB free\) for a test, also after a retry"):
        guarded(dev, "a test", too_big)
    assert len(calls) == 2
    assert torch.ones(1024, device=dev).sum().item() == 1024
