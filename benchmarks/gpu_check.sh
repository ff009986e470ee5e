#!/usr/bin/env bash
# One prepared run for a GPU machine (issue 16), from the repository root, within
# GPU_CHECK_SECONDS (default 340; benchmarks/device_run.sh gives it less):
#   1. the CUDA tests (tests/test_engine_cuda.py: fp16 / bf16 vs fp32 on the shipped weights,
#      finite attention with large activations, peak GPU memory at 8K, the torch prior on
#      CUDA vs CPU), their numbers to $OUT/cuda_report.jsonl;
#   2. the 6K frame split and the 1K-8K scaling rows (benchmarks/gpu_check.py; each row once
#      more under cProfile: profile_*.txt, what the host does while the device waits) to
#      $OUT/gpu_check.md and .json.
# The machine needs Python 3.12 with torch (CUDA), numpy, scipy, safetensors and pytest: the
# H200 image has them all (PyMatting is not needed: the prior is torch). Should a package be
# missing, carry it as wheels in .whl/ (<= 64 MiB; see /work/.library/device/README.md); they
# are installed first. Device call:
#   run(command="bash benchmarks/gpu_check.sh", timeout_s=420)          (carry [".whl"] if any)
# then record $OUT/gpu_check.md in benchmarks/RESULTS.md with the GPU named.
set -uo pipefail
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" || exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
start=$SECONDS
budget=${GPU_CHECK_SECONDS:-340}       # the tests get at most 55 % of it, the rows the rest
HDMATT_GPU_REPORT="$OUT/cuda_report.jsonl" timeout $((budget * 55 / 100)) python3 -m pytest -q -rs -p no:cacheprovider \
    -o addopts="" tests/test_engine_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
tests_rc=${PIPESTATUS[0]}
echo "CUDA tests: rc $tests_rc in $((SECONDS - start)) s"
timeout $((budget - (SECONDS - start))) python3 -m benchmarks.gpu_check --device cuda --out "$OUT" --profile 2>&1 | tee "$OUT/gpu_check.log"
bench_rc=${PIPESTATUS[0]}
echo "scaling + 6K split: rc $bench_rc; total $((SECONDS - start)) s"
exit $(( tests_rc != 0 ? tests_rc : bench_rc ))
