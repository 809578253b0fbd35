#!/usr/bin/env bash
# One GPU visit (issues 22, 23) on the GPU test machine, as one prepared command (benchmarks/GPU_CHECK.md):
#   source .gpu-bundle/activate.sh && bash benchmarks/gpu_visit.sh $OUT STEP... [-- sweep overrides]
# Steps: training (model.fit steps/s per steps_per_execution and batch; the JAX loop's work a step and its
# rate at each convolution precision and dtype policy), kernels (simulate and each of its stages against its
# bounds), tests (pytest -m gpu), packing (K runs as one program against K solo runs, published size),
# smoke (the full spec through Ray at one epoch), sweeps (gpu_check.py's sweep step: `sweep run` with packing
# off and on, runs/hour), sweep (the published-size dose response through `sweep run`, e.g. `-- repeats=3
# pack=6`), budget (published_budget.yaml: which training budget reaches SSIM 0.95 at gridsize 2). A sweep's
# directory comes back as OUT/<step>.tgz without its models, datasets and arrays (the returned files are at
# most 16 MiB each: the arrays alone were 127 MB).
# Each step writes OUT/<step>.txt as it goes and has its own time limit (SECONDS_<STEP> overrides it), so
# one that fails or runs long leaves the others.
set -uo pipefail
out=${1:?usage: gpu_visit.sh OUTDIR STEP... [-- sweep overrides]}; shift
steps=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do steps+=("$1"); shift; done; [ $# -gt 0 ] && shift
specs=studies/ptychography/specs
spec=$specs/dose_response_full.yaml

step() {
  local name=$1 limit=$2; shift 2
  echo "== $(date +%T) $name (limit ${limit} s)" | tee -a "$out/visit.log"
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  echo "== $(date +%T) $name: exit $?" | tee -a "$out/visit.log"
  tail -n 30 "$out/$name.txt"
}

sweep_step() {  # name limit spec [overrides]: `sweep run` through Ray, its directory packed small
  local name=$1 limit=$2 file=$3; shift 3
  step "$name" "$limit" python3 -m sweeper.cli run "$file" "$@" --out "$name" --no-progress
  tar czf "$out/$name.tgz" --exclude='*.keras' --exclude='*.npz' --exclude='datasets' "$name"
}

for s in "${steps[@]}"; do case $s in
  training) step training "${SECONDS_TRAINING:-300}" python3 benchmarks/bench_training.py --steps 60 \
              --steps-per-execution 20 --fit-batches 16 64 --matmul-precisions default float32 bfloat16 \
              --dtype-policies float32 mixed_bfloat16 ;;
  kernels) step kernels "${SECONDS_KERNELS:-100}" python3 benchmarks/gpu_check.py --skip tests training study sweep \
              --repeats 2 --out "$out/gpu_check.md" ;;
  tests) step tests "${SECONDS_TESTS:-90}" python3 -m pytest -q -m gpu -p no:cacheprovider \
              tests/kernels/test_gpu.py tests/kernels/test_simulate_gpu.py ;;
  packing) step packing "${SECONDS_PACKING:-240}" python3 benchmarks/bench_packing.py --N 64 --gridsize 2 \
              --n-train 2000 --epochs 10 --width 32 --batch 16 --packs 1 2 4 6 8 ;;
  sweeps) step sweeps "${SECONDS_SWEEPS:-300}" python3 benchmarks/gpu_check.py --skip tests kernels training study \
              --out "$out/sweeps.md" ;;
  smoke) step smoke "${SECONDS_SMOKE:-120}" python3 -m sweeper.cli run "$spec" repeats=1 fit.epochs=1 \
              data.n_train=64 'sweep.data.nphotons=[1e9]' --out smoke --no-progress ;;
  sweep) sweep_step sweep "${SECONDS_SWEEP:-480}" "$spec" "$@" ;;
  budget) sweep_step budget "${SECONDS_BUDGET:-480}" "$specs/published_budget.yaml" "$@" ;;
  *) echo "unknown step $s" >&2; exit 2 ;;
esac; done
