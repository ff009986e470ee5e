#!/usr/bin/env bash
# One prepared command for a lent GPU machine (issues 16 and 19), from the repository root:
#   1. benchmarks/gpu_check.sh: the CUDA tests, then the 6K frame split and the 1K-8K rows
#      (pinned to 4 cores, nothing else on the GPU), GPU_CHECK_SECONDS in all (0: skipped);
#   2. training: sample builders on the other cores (CPU priors while the check runs, then
#      GPU priors as well), and `hdmatt train` on the GPU in bf16 from the shipped weights,
#      validating on the held-out dev images every VAL_MINUTES and keeping those weights;
#   3. the checkpoint chosen by leave-one-image-out cross-validation
#      (nuke_hdmatt/training/selection.py); weights and logs to $OUT.
# Everything ends within BUDGET seconds (default 560) of the start.
#
# The machine has Python 3.12, torch + CUDA, numpy, scipy; OpenImageIO travels as a wheel and
# the shared data through a link (the ../shared beside the checkout does not travel). Once,
# in the checkout on the developer machine:
#   ln -s ../shared/data .gpu_data; printf '/.gpu_data\n/.whl/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 -d .whl OpenImageIO==3.2.2.0 opencolorio==2.6.0
# Device call (about 35 MiB travels):
#   run(command="bash benchmarks/device_run.sh", timeout_s=600,
#       carry=[".whl", ".gpu_data/alphamatting-dev", ".gpu_data/backgrounds"])
set -uo pipefail
BUDGET=${BUDGET:-560}
GPU_CHECK_SECONDS=${GPU_CHECK_SECONDS:-200}
VAL_MINUTES=${VAL_MINUTES:-1.0}
OUT="${OUT:-runs/device}"
WORK=${WORK:-/tmp/hdmatt_device}
mkdir -p "$OUT" "$WORK/cpu192" "$WORK/gpu192"
start=$SECONDS
left() { echo $((BUDGET - (SECONDS - start))); }
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" || exit 2
fi
export HDMATT_SHARED_DATA="$PWD/.gpu_data" HDMATT_DATA_CACHE="$WORK/fg"
python3 -c "import torch, OpenImageIO; assert torch.cuda.is_available()" || { echo "no CUDA or OIIO"; exit 2; }
cores=$(nproc)
pin() {   # pin CORES command...: taskset where the machine has it
    local c=$1; shift
    if command -v taskset >/dev/null; then taskset -c "$c" "$@"; else "$@"; fi
}

SAMPLES="--n 12000 --patch 192 --per-scene 8 --prior-downscale 0.6 --highres 0.75 \
    --procedural 0.5 --see-through 0.4 --colour-overlap 0.2 --prior-solver cf+sm"
build() {   # folder seed device shards cores
    local n=$4
    for k in $(seq 1 "$n"); do
        pin "$5" env OMP_NUM_THREADS=1 nice -n 5 python3 -m nuke_hdmatt.training.dataset build \
            --out "$1" --seed "$2" --device "$3" --shard "$k/$n" $SAMPLES >>"$WORK/build_$2.log" 2>&1 &
    done
}
# Foreground colours (engine.foreground) and background copies are derived once, before the
# builders start (each would otherwise derive them), on the cores the GPU check leaves free.
(
    pin "4-$((cores - 1))" env OMP_NUM_THREADS=$((cores - 4)) python3 - <<'EOF' 2>&1 | tee "$WORK/prepare.log"
from nuke_hdmatt.training.sources import BackgroundBank, DevForegrounds
DevForegrounds(device="cpu").prepare()
bank = BackgroundBank()
for i in range(len(bank.paths)):
    for side in bank.long_sides:
        bank.image(i, side)
print("prepared")
EOF
    build "$WORK/cpu192" 31 cpu $((cores - 5)) "4-$((cores - 1))"
    [ "$GPU_CHECK_SECONDS" -gt 0 ] || build "$WORK/gpu192" 32 cuda 4 "0-3"
) &

if [ "$GPU_CHECK_SECONDS" -gt 0 ]; then
    pin 0-3 env GPU_CHECK_SECONDS="$GPU_CHECK_SECONDS" bash benchmarks/gpu_check.sh 2>&1 \
        | tee "$WORK/gpu_check_run.log"
    # gpu_check.sh wrote into $OUT; one archive keeps the returned file count low (8 at most)
    (cd "$OUT" && tar czf gpu_check.tgz gpu.txt cuda_report.jsonl cuda_tests.log gpu_check.md \
        gpu_check.json gpu_check.log profile_*.txt 2>/dev/null; rm -f gpu.txt cuda_report.jsonl \
        cuda_tests.log gpu_check.md gpu_check.json gpu_check.log profile_*.txt)
    build "$WORK/gpu192" 32 cuda 4 "0-3"
fi
minutes=$(python3 -c "print(max(0.5, ($(left) - 75) / 60))")
echo "training for $minutes min ($(ls "$WORK"/cpu192/*.npz 2>/dev/null | wc -l) samples so far)"
python3 -m nuke_hdmatt.training.cli --data "$WORK/cpu192,$WORK/gpu192" --run "$WORK/run" \
    --variant D --init nuke_hdmatt/model/hdmatt.safetensors --prior-solver cf+sm --batch 32 --steps 100000 --minutes "$minutes" \
    --lr 3e-4 --warmup --val-minutes "$VAL_MINUTES" --ckpt-minutes 100 --workers 4 --threads 4 \
    --min-samples 256 --validate-first --keep-val-weights 2>&1 | tee "$WORK/train.log"
pkill -f nuke_hdmatt.training.dataset 2>/dev/null || true
python3 -m nuke_hdmatt.training.selection "$WORK/run/history.json" --out "$WORK/selection.json" \
    2>&1 | tee "$WORK/selection.log"
python3 - "$WORK" "$OUT" <<'EOF'
import json, shutil, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
sel = json.loads((work / "selection.json").read_text())
steps = {sel["chosen_on_all"]} | {f["step"] for f in sel["folds"]}
history = json.loads((work / "run" / "history.json").read_text())
steps.add(history[-1]["step"])
steps = sorted(steps)[-5:]          # at most 8 files come back
for step in steps:
    src = work / "run" / f"val_step{step:06d}.safetensors"
    if src.exists():
        shutil.copy(src, out / src.name)
print("weights returned for steps", steps)
EOF
(cd "$WORK" && tar czf "$OUT/train.tgz" train.log selection.log selection.json prepare.log \
    run/history.json build_31.log build_32.log gpu_check_run.log 2>/dev/null)
echo "samples: $(ls "$WORK"/cpu192/*.npz | wc -l) cpu-prior, $(ls "$WORK"/gpu192/*.npz | wc -l) gpu-prior; total $((SECONDS - start)) s"
