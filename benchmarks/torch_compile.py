"""Does ``torch.compile`` pay on the CPU (issue 16.3)? The shipped network's encoder (the
largest share of the network's CPU time), eager against compiled (inductor), on a batch of
query patches as the engine runs them (BatchNorm folded, channels-last), in float32 and in
the CPU's bf16 autocast.

Per precision: the first compiled call (compilation included: what every fresh process,
farm worker or container would pay, as the engine runs one process per shot), the
steady-state time per call of each (median of ``--reps``), their ratio, the calls it takes
to pay the compilation back, and the largest difference of the deep features.

    .venv/bin/python -m benchmarks.torch_compile --threads 2

The engine does not compile (docs/ENGINE.md: nothing compiles at first use); this table is
why, or where that should change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext

from .report import machine_info, machine_line, markdown_table, publish


def _deep(module, x, autocast):
    with autocast():
        return module(x)["deep"].float()


def _median_time(fn, reps: int, *args) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="patches per call (the CPU engine's 4)")
    ap.add_argument("--patch", type=int, default=320)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    # a fresh worker's cache is empty: measure compilation cold, not from an earlier run
    cache = tempfile.TemporaryDirectory(prefix="inductor_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    import torch

    from nuke_hdmatt.engine import Engine
    from nuke_hdmatt.engine.runner import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    eng = Engine.load(device="cpu")
    encoder = eng.net.encoder
    channels = 5 if eng.net.cfg.uses_prior else 4
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, channels, args.patch, args.patch, generator=gen) * 2 - 1)
    x = x.contiguous(memory_format=torch.channels_last)
    precisions = [("fp32", nullcontext)]
    if cpu_has_native_bf16():
        precisions.append(("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16)))
    rows = []
    for label, ctx in precisions:
        torch._dynamo.reset()
        compiled = torch.compile(encoder)
        with torch.inference_mode():
            want = _deep(encoder, x, ctx)
            t0 = time.perf_counter()
            got = _deep(compiled, x, ctx)
            first = time.perf_counter() - t0
            eager_s = _median_time(_deep, args.reps, encoder, x, ctx)
            compiled_s = _median_time(_deep, args.reps, compiled, x, ctx)
        gain = eager_s - compiled_s
        payback = f"{(first - compiled_s) / gain:.0f}" if gain > 0 else "never"
        rows.append([label, first, eager_s, compiled_s, f"{compiled_s / eager_s:.2f}", payback,
                     f"{(got - want).abs().max().item():.2e}"])
        print(" ".join(str(v) for v in rows[-1]), flush=True)
    header = ["precision", "first compiled call s", "eager s/call", "compiled s/call",
              "compiled/eager", "calls to pay back", "max abs diff (deep features)"]
    text = ("## torch.compile on the CPU (issue 16.3)\n\n"
            f"{machine_line(info)}.\n\nThe shipped network's encoder on {args.batch} patches of "
            f"{args.patch} px (BatchNorm folded, channels-last, as the engine runs it), eager "
            f"against `torch.compile` (inductor, empty compile cache, as on a fresh worker); "
            f"steady state = median of {args.reps} calls "
            "after the first. A 6K frame at 10 % unknown runs about 60 such calls.\n\n"
            + markdown_table(header, rows))
    publish("torch_compile", False, text)
    cache.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
