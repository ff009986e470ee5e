"""The training loop: Adam, cosine decay, resumable checkpoints, periodic validation.

Checkpoints (model, optimiser, step, wall time) are written atomically to the run
folder every few minutes and on Ctrl-C; starting again with the same run folder
resumes where it stopped (the schedule and ``minutes`` count the run's time over all its
sessions). Whenever validation improves, ``best.safetensors`` (float16, with its
configuration) and ``best.json`` are written beside them; ``last.safetensors`` holds the
weights where the run stopped (a run without validation has no other). A stop by Ctrl-C or
SIGTERM saves both files and is re-raised, so the command exits as stopped, not done.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path, write_text_atomic
from ..engine.config import PRESETS, ModelConfig
from ..engine.network import HDMattNet, make_input
from ..engine.weights import load_network, save_weights
from ..errors import UsageError
from .loss import matting_loss, patch_weights
from .validation import evaluate_engine


@dataclass
class TrainSettings:
    run: Path
    data: Path
    preset: str = "light"
    variant: str = "D"
    init: Path | None = None
    batch: int = 4
    steps: int = 3000
    minutes: float = 0.0          # wall-time budget for this invocation (0 = none)
    lr: float = 5e-4
    weight_decay: float = 1e-4
    overlap: int = 32
    ckpt_minutes: float = 4.0
    val_minutes: float = 12.0
    val_dataset: Path | None = None
    val_images: tuple = ()
    threads: int = 2
    seed: int = 0
    validate_first: bool = False
    prior_solver: str | None = None
    warmup: bool = False            # linear warm-up over WARMUP_STEPS
    keep_val_weights: bool = False  # weights of every validated step (choose by cross-validation later)
    freeze_bn: bool = False         # BatchNorm statistics held at the init weights' (see _train_mode)
    log: list = field(default_factory=list)


WARMUP_STEPS = 50


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(obj, tmp)


def _train_mode(net: HDMattNet, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` every BatchNorm normalises with its running
    statistics and leaves them as they are (its scale and shift still learn). A fine-tune at
    batch 4 otherwise re-estimates the statistics from a few patches a step, and the ones the
    engine folds into the convolutions are those of the last few dozen batches."""
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def build_network(s: TrainSettings) -> HDMattNet:
    net = _base_network(s)
    if s.prior_solver and net.cfg.prior_solver != s.prior_solver:
        # the solver is data, not architecture: the same weights start from the new prior
        print(f"prior solver {net.cfg.prior_solver} -> {s.prior_solver}")
        net.cfg = net.cfg.replace(prior_solver=s.prior_solver)
    return net


def _base_network(s: TrainSettings) -> HDMattNet:
    if s.init:
        net, _ = load_network(s.init)
        if net.cfg.variant != s.variant:
            print(f"init weights are variant {net.cfg.variant}; training variant {s.variant} from them")
            cfg = net.cfg.replace(variant=s.variant)
            fresh = HDMattNet(cfg)
            own = fresh.state_dict()
            for k, v in net.state_dict().items():
                if k in own and own[k].shape == v.shape:
                    own[k] = v
            fresh.load_state_dict(own)
            net = fresh
        return net
    cfg = PRESETS[s.preset].replace(variant=s.variant)
    torch.manual_seed(s.seed)
    return HDMattNet(cfg)


def batch_to_device(batch: dict, cfg: ModelConfig, device) -> tuple:
    """Dataset batch -> (x, trimap, prior, cx, ctrimap, alpha, image, fg, bg)."""
    def g(k: str) -> Any:
        return batch[k].to(device).float() if k in batch else None
    image, trimap, prior = g("image"), g("trimap"), g("prior")
    x = make_input(image, trimap, prior, cfg)
    cx = ctri = None
    if cfg.uses_context:
        ci, ct, cp = g("ctx_image"), g("ctx_trimap"), g("ctx_prior")
        b, n = ci.shape[:2]
        cx = make_input(ci.flatten(0, 1), ct.flatten(0, 1), None if cp is None else cp.flatten(0, 1), cfg)
        cx = cx.view(b, n, *cx.shape[1:])
        ctri = ct
    return x, trimap, prior, cx, ctri, g("alpha"), image, g("fg"), g("bg")


def _autocast(device: torch.device):
    """bf16 on CUDA (fp32 master weights; bf16 keeps fp32's range, so no loss scaling)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train(s: TrainSettings, loader_factory, val_pairs=None) -> dict:
    torch.set_num_threads(s.threads)
    s.run.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt_path = s.run / "ckpt.pt"
    net = build_network(s).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    state: dict[str, Any] = {"step": 0, "elapsed": 0.0, "best": math.inf, "history": []}
    if ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location=device, weights_only=False)
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
        except (RuntimeError, ValueError, KeyError, EOFError, OSError) as exc:
            # another --variant / --preset, or a checkpoint cut short: never a traceback
            reason = " ".join(str(exc).split())[:160]
            raise UsageError(f"cannot resume from this checkpoint ({reason}); its run used "
                             "another configuration, or it is damaged: use a new --run",
                             path=str(ckpt_path)) from None
        print(f"resumed {ckpt_path} at step {state['step']}")
    (s.run / "settings.json").write_text(json.dumps(
        {k: str(v) for k, v in s.__dict__.items() if k != "log"} | {"config": net.cfg.to_dict()}, indent=1))
    weights = None  # blend weights of the loss, made once the patch size is known

    def elapsed() -> float:
        """The run's wall time over all its sessions (a resumed run goes on from there)."""
        return session_start + (time.time() - start)

    def sched(step: int) -> float:
        """Cosine decay to 0 at ``steps`` or at the end of ``minutes``, whichever comes first
        (a GPU run's step rate is not known in advance), after a short warm-up (fine-tuning
        with a large batch)."""
        progress = step / s.steps
        if s.minutes:
            progress = max(progress, elapsed() / (s.minutes * 60))
        warm = min(1.0, (step + 1) / WARMUP_STEPS) if s.warmup else 1.0
        return warm * 0.5 * s.lr * (1 + math.cos(math.pi * min(progress, 1.0)))

    def save_ckpt():
        _atomic_torch_save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt_path)

    def save_last():
        save_weights(net, s.run / "last.safetensors",
                     extra={"step": state["step"], "data": str(s.data)})

    def validate():
        if not val_pairs or (state["history"] and state["history"][-1]["step"] == state["step"]):
            return
        from ..engine.runner import Engine
        net.eval()
        # float32 whatever the device, one pass (no flip), not snapped to 0 and 1: the
        # validation history compares checkpoints, not precisions or finishing, across
        # machines and with every earlier run's history (and the model card's one-pass
        # rows), in half the time
        eng = Engine(net, device, patch=320, overlap=s.overlap, k=net.cfg.k, pool=30,
                     precision="fp32", flip=False, snap=0.0)
        with torch.no_grad():
            res = evaluate_engine(eng, val_pairs)
        _train_mode(net, s.freeze_bn)
        model_sad = (res["model/trimap1"]["sad"] + res["model/trimap2"]["sad"]) / 2
        entry = {"step": state["step"], "elapsed_min": state["elapsed"] / 60, **res}
        state["history"].append(entry)
        write_text_atomic(s.run / "history.json", json.dumps(state["history"], indent=1))
        line = "  ".join(f"{k}: SAD {v['sad']:.2f} MSE {v['mse'] * 1e3:.1f} Grad {v['grad']:.2f} "
                         f"Conn {v['conn']:.2f}" for k, v in res.items() if "/" in k)
        print(f"[val step {state['step']}] {line}", flush=True)
        if s.keep_val_weights:
            save_weights(net, s.run / f"val_step{state['step']:06d}.safetensors",
                         extra={"step": state["step"], "data": str(s.data)})
        if model_sad < state["best"]:
            state["best"] = model_sad
            save_weights(net, s.run / "best.safetensors",
                         extra={"step": state["step"], "elapsed_min": round(state["elapsed"] / 60, 1),
                                "val": res, "data": str(s.data)})
            write_text_atomic(s.run / "best.json", json.dumps(entry, indent=1))
            print(f"  new best mean SAD {model_sad:.3f} -> {s.run / 'best.safetensors'}", flush=True)

    _train_mode(net, s.freeze_bn)
    start = time.time()
    session_start = state["elapsed"]
    last_ckpt = last_val = time.time()
    loss_avg = None
    if state["step"] == 0 and s.validate_first:
        validate()
    try:
        while state["step"] < s.steps:
            for batch in loader_factory(state["step"]):
                x, tri, prior, cx, ctri, alpha, image, fg, bg = batch_to_device(batch, net.cfg, device)
                if weights is None:
                    weights = patch_weights(x.shape[-1], min(s.overlap, x.shape[-1] // 4)).to(device)
                for g in opt.param_groups:
                    g["lr"] = sched(state["step"])
                with _autocast(device):
                    pred = net(x, tri, prior, cx, ctri)
                loss = matting_loss(pred.float(), alpha, image, fg, bg, tri, weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                state["step"] += 1
                now = time.time()
                state["elapsed"] = elapsed()
                loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
                if state["step"] % 10 == 0:
                    rate = state["step"] / max(state["elapsed"], 1e-6)
                    eta = (s.steps - state["step"]) / max(rate, 1e-9)
                    print(f"step {state['step']}/{s.steps}  loss {loss_avg:.4f}  "
                          f"lr {sched(state['step']):.2e}  "
                          f"{rate:.2f} steps/s  ETA {eta / 60:.0f} min", flush=True)
                if now - last_ckpt > s.ckpt_minutes * 60:
                    save_ckpt()
                    last_ckpt = now
                if now - last_val > s.val_minutes * 60:
                    validate()
                    save_ckpt()
                    last_val = time.time()
                if state["step"] >= s.steps or (s.minutes and state["elapsed"] > s.minutes * 60):
                    raise StopIteration
    except (StopIteration, KeyboardInterrupt) as exc:
        print(f"stopping at step {state['step']} ({type(exc).__name__})", file=sys.stderr)
        if isinstance(exc, KeyboardInterrupt):
            # stopped, not done: what it has is kept, no validation (minutes on a CPU), and
            # the command says so and exits 130 / 143
            save_ckpt()
            save_last()
            raise
    save_ckpt()
    validate()
    save_ckpt()
    save_last()
    return state

