#!/usr/bin/env bash
# The CUDA paths of gipc in one short run, for a machine with a GPU: fusion on CUDA scored against
# the pairs, the network paths' timings (bench_runtime), the training loop's speed at the quick and
# the paper's patch sizes (bench_training), and the quick job trained on the GPU (bf16 where it has it).
#
#     bash benchmarks/cuda_check.sh [PAIRS_DIR] [OUT_DIR]      # defaults: ../shared/data/lytro/pairs, outputs/cuda-check/
#
# Each step has a time limit and writes its log into OUT_DIR; the summary goes to OUT_DIR/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-../shared/data/lytro/pairs}
OUT=${2:-outputs/cuda-check}
PY=${PYTHON:-python3}  # python3 is there in a venv and on machines without a plain `python`
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null
case $? in
  0) ;;
  3) echo "cuda_check.sh: no CUDA device here" >&2; exit 2 ;;
  *) echo "cuda_check.sh: $PY cannot import torch: activate gipc's venv or set PYTHON" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
step() { echo "=== $(date +%T) $*" | tee -a "$OUT/summary.txt"; }

step environment
"$PY" -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())" 2>&1 | tee -a "$OUT/summary.txt"
step "gipc-fuse --device cuda, default rule and --rule direct, scored with gipc-eval"
timeout 120 "$PY" -m gipc.cli.fuse --pairs "$PAIRS" --out "$OUT/fused-map" --device cuda > "$OUT/fuse.log" 2>&1
timeout 60 "$PY" -m gipc.cli.fuse --pairs "$PAIRS" --out "$OUT/fused-direct" --device cuda --rule direct >> "$OUT/fuse.log" 2>&1
timeout 120 "$PY" -m gipc.cli.evaluate --sources "$PAIRS" --fused gipc=$OUT/fused-direct --fused gipc+map=$OUT/fused-map 2>&1 | tee -a "$OUT/summary.txt"
step bench_runtime --device cuda
timeout 240 "$PY" benchmarks/bench_runtime.py --device cuda --pairs "$PAIRS" --limit 5 --baseline-limit 1 > "$OUT/bench_runtime.txt" 2>&1
grep -A8 "Network paths\|Fusion rules\|Peak memory" "$OUT/bench_runtime.txt" | tee -a "$OUT/summary.txt"
step bench_training --device cuda
timeout 90 "$PY" benchmarks/bench_training.py --device cuda --steps 30 > "$OUT/bench_training.txt" 2>&1
timeout 120 "$PY" benchmarks/bench_training.py --device cuda --patch 80 --batch 32 --steps 30 > "$OUT/bench_training_paper.txt" 2>&1
tail -n 6 "$OUT/bench_training.txt" "$OUT/bench_training_paper.txt" | tee -a "$OUT/summary.txt"
step "gipc/run.py trainer=gpu (the quick job on the GPU)"
( time timeout 300 "$PY" gipc/run.py trainer=gpu logger=csv hydra.run.dir="$OUT/run-gpu" ) > "$OUT/run_gpu.log" 2>&1
tail -n 3 "$OUT/run_gpu.log" | tee -a "$OUT/summary.txt"
cat "$OUT/run-gpu/metrics.md" >> "$OUT/summary.txt" 2>/dev/null
step done
