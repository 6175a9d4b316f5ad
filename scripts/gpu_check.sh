#!/usr/bin/env bash
# Build, test and benchmark everything CUDA on a machine with a GPU (uses the python3 that has torch).
# Usage: bash scripts/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/gpu.txt"
export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
time "$py" setup.py build_ext --inplace > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
"$py" -m pytest python_tests/test_build.py python_tests/test_lowfreq.py python_tests/test_lowfreq_cuda.py \
  python_tests/test_lowfreq_compile.py python_tests/test_augment_cuda.py -q -p no:cacheprovider --benchmark-disable 2>&1 | tee "$out/tests.log"
PYTHONPATH=. "$py" scripts/bench_gpu.py --profile --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.md"
PYTHONPATH=. "$py" scripts/bench_gpu.py --augment --json "$out/bench_gpu_augment.json" 2>&1 | tee "$out/bench_gpu_augment.md"
# A CPU-only build must refuse CUDA tensors with a clear error (built in a copy so the CUDA build stays).
rm -rf /tmp/etrain_cpu_only && mkdir -p /tmp/etrain_cpu_only && cp -r csrc efficienttrain_ext setup.py python_tests /tmp/etrain_cpu_only/
rm -f /tmp/etrain_cpu_only/efficienttrain_ext/_C*.so
(cd /tmp/etrain_cpu_only && FORCE_CUDA=0 "$py" setup.py build_ext --inplace > build.log 2>&1 &&
  "$py" -m pytest python_tests/test_build.py -k cpu_only_build -q -p no:cacheprovider -rs 2>&1 | tee "$out/tests_cpu_only_build.log")
