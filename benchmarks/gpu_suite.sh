#!/usr/bin/env bash
# The GPU performance table in one run: inference against kornia's LoFTR (same weights, same pair),
# Efficient LoFTR against its official code and our LoFTR, the coarse transformer with linear, full and
# QuadTree attention,
# and training throughput and peak memory of the full models, over fp32/bf16, linear/SDPA attention,
# channels-last and torch.compile. Usage: bash benchmarks/gpu_suite.sh [LOG] (default: gpu_suite.log).
# Each line of the log is a command followed by its table; paste them into benchmarks/RESULTS.md.
set -uo pipefail
log=${1:-gpu_suite.log}
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
step() {
    echo "\$ $*" | tee -a "$log"
    timeout 300 "$@" 2>&1 | grep -v Warning | tee -a "$log" || echo "(failed or timed out: $?)" | tee -a "$log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log"
inference="python benchmarks/inference.py --device cuda --sizes 480x640 --runs 20"
step $inference
step $inference --autocast bf16
step $inference --autocast bf16 --attention full
step $inference --autocast bf16 --attention full --channels-last
step $inference --autocast bf16 --attention full --channels-last --compile
eloftr="python benchmarks/inference.py --device cuda --eloftr --sizes 480x640 --runs 20"
step $eloftr
step $eloftr --autocast bf16
step python benchmarks/inference.py --device cuda --attention quadtree --sizes 480x640 840x840 --runs 20
training="python benchmarks/training.py --device cuda --model loftr --sizes 640x480 840x840 --steps 20"
step $training
step $training --precision bf16-mixed
step $training --precision bf16-mixed --attention full
step $training --precision bf16-mixed --attention full --channels-last --compile
step python benchmarks/training.py --device cuda --models loftr eloftr --sizes 640x480 832x832 --steps 20 \
    --precision bf16-mixed  # Efficient LoFTR training against LoFTR
