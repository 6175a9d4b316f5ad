#!/usr/bin/env bash
# Build, test and benchmark everything CUDA on a machine with a GPU (uses the python3 that has torch).
# Usage: bash scripts/gpu_check.sh [OUT_DIR]
#
# Only a missing GPU or a failed build stops the script; after that every step runs even when an earlier test or
# benchmark step failed (so one run gives all results). Each step's log goes to OUT_DIR, its exit status and time
# to OUT_DIR/summary.txt; the script exits non-zero if any step failed.
# Optional packages (hypothesis for test_lowfreq_ops.py, pytest-benchmark, scikit-image / torchvision / kornia / timm
# for the augment benchmark) are used when importable and otherwise skipped with a message.
# ETRAIN_SANITIZE=1 also runs a few CUDA augment tests under compute-sanitizer (memcheck, racecheck; slow).
set -uo pipefail
out=${1:-gpu_results}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # resolved before the cd below, so a relative OUT_DIR is relative to the caller
. "$(dirname "$0")/abs_path.sh"
py="$(abs_python "${PYTHON:-python3}")" || exit 1  # likewise; cpu_only_build also cd's to /tmp
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
: > "$out/summary.txt"
failed=()

# step NAME LOG CMD...: run CMD, its output to the terminal and $out/LOG; record the status.
step() {
  local name=$1 log=$2 t0=$SECONDS rc
  shift 2
  echo "=== $name"
  "$@" 2>&1 | tee "$out/$log"
  rc=${PIPESTATUS[0]}
  echo "=== $name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)") ($((SECONDS - t0)) s)" |
    tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || failed+=("$name")
  return 0
}
have() { "$py" -c "import $1" > /dev/null 2>&1; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt" ||
  echo "nvidia-smi failed" | tee -a "$out/gpu.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "available", torch.cuda.is_available())' | tee -a "$out/gpu.txt"
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "torch sees no CUDA GPU: the CUDA tests would all be skipped; stopping" | tee -a "$out/summary.txt"
  exit 1
fi

export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
t0=$SECONDS
if ! "$py" setup.py build_ext --inplace > "$out/build.log" 2>&1; then
  tail -50 "$out/build.log"
  echo "=== build: FAILED ($((SECONDS - t0)) s), see build.log" | tee -a "$out/summary.txt"
  exit 1
fi
echo "=== build: ok ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
if ! PYTHONPATH=. "$py" -c 'import sys, efficienttrain_ext as et; sys.exit(0 if et.built_with_cuda() else 1)'; then
  echo "the library was built without CUDA kernels; stopping" | tee -a "$out/summary.txt"
  exit 1
fi

# The op suites run every test on the CPU and on CUDA (the `device` fixture) and compare CUDA with the CPU kernels
# bit for bit. test_lowfreq_ops.py needs hypothesis; pytest-benchmark only provides --benchmark-disable. A
# collection error in one file (a missing import) must not stop the other files' tests.
tests=(python_tests/test_build.py python_tests/test_augment_ops.py)
if have hypothesis; then
  tests+=(python_tests/test_lowfreq_ops.py)
else
  echo "hypothesis is not installed: skipping python_tests/test_lowfreq_ops.py" | tee -a "$out/summary.txt"
fi
extra=()
have pytest_benchmark && extra+=(--benchmark-disable)
step tests tests.log "$py" -m pytest "${tests[@]}" -q -p no:cacheprovider -ra --continue-on-collection-errors \
  "${extra[@]}"
step "bench lowfreq" bench_gpu.md env PYTHONPATH=. "$py" scripts/bench_gpu.py --profile --json "$out/bench_gpu.json"
step "bench augment" bench_gpu_augment.md env PYTHONPATH=. "$py" scripts/bench_gpu.py --augment \
  --json "$out/bench_gpu_augment.json"

# The data path (issue 14): torch DataLoader vs DALI cpu / mixed (nvJPEG) img/s against ResNet-50's step at each B,
# and 2-epoch `etrain train` runs at B = 160 / 224 with each loader. Needs timm and PIL; DALI mixed only where
# nvidia.dali is importable (the GPU image may not have it: then the torch loader alone is measured).
if have timm && have PIL; then
  devices=cpu
  have nvidia.dali && devices=cpu,mixed
  have nvidia.dali || echo "nvidia.dali is not installed: the loader benchmark measures the torch loader only" |
    tee -a "$out/summary.txt"
  step "photo folder" photos.log env PYTHONPATH=. "$py" scripts/make_photo_folder.py /tmp/etrain_photos \
    --per-class 400 --val-per-class 10
  step "bench loader" bench_loader.log env PYTHONPATH=. "$py" scripts/bench_loader.py --root /tmp/etrain_photos \
    --devices "$devices" --workers 1,4,8,16 --batch 160 --model resnet50 --model-device cuda --model-batch 160 \
    --e2e --out "$out/bench_loader_gpu"
else
  echo "timm or PIL is not installed: skipping the loader benchmark" | tee -a "$out/summary.txt"
fi

# A CPU-only build must refuse CUDA tensors with a clear error (built in a copy so the CUDA build stays).
cpu_only_build() (
  set -e
  rm -rf /tmp/etrain_cpu_only && mkdir -p /tmp/etrain_cpu_only
  cp -r csrc buildtools efficienttrain_ext setup.py python_tests /tmp/etrain_cpu_only/
  rm -f /tmp/etrain_cpu_only/efficienttrain_ext/_C*.so
  cd /tmp/etrain_cpu_only
  FORCE_CUDA=0 "$py" setup.py build_ext --inplace > build.log 2>&1 || { tail -50 build.log; exit 1; }
  "$py" -m pytest python_tests/test_build.py -k cpu_only_build -q -p no:cacheprovider -rs | tee pytest.log
  grep -q " passed" pytest.log || { echo "the CPU-only build test did not pass (skipped?)"; exit 1; }
)
step "cpu-only build" tests_cpu_only_build.log cpu_only_build

if [ "${ETRAIN_SANITIZE:-0}" = 1 ]; then
  if command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
      step "compute-sanitizer $tool" "sanitizer_$tool.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
        compute-sanitizer --tool "$tool" --error-exitcode 3 "$py" -m pytest python_tests/test_augment_ops.py -q \
        -p no:cacheprovider -x -k "each_op_cuda or blur_cuda_equals_cpu_all_sizes or histogram_ops_large"
    done
  else
    echo "compute-sanitizer not found: skipping the sanitizer runs" | tee -a "$out/summary.txt"
  fi
fi

echo "=== summary"
cat "$out/summary.txt"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
