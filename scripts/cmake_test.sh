#!/usr/bin/env bash
# Configure, build and test the CMake (libtorch, no Python) build of the etrain ops: see docs/cmake.md.
#
#   bash scripts/cmake_test.sh                 # from any directory; uses $PYTHON or <repo>/.venv/bin/python
#   PYTHON=/path/to/python BUILD_DIR=/tmp/b JOBS=2 bash scripts/cmake_test.sh -DETRAIN_WITH_CUDA=ON
#
# Extra arguments go to the configure step. Exit status: ctest's (0 = all tests passed or skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/abs_path.sh"
PY="$(abs_python "${PYTHON:-$ROOT/.venv/bin/python}")"  # absolute, for cmake (and the tests it runs)
BUILD_DIR="${BUILD_DIR:-$ROOT/build-cmake}"
JOBS="${JOBS:-2}"

# torch's CMake package, and pip's CUDA libraries next to it (a CUDA build of torch needs nvrtc and the CUDA
# toolkit at configure time even when only the CPU kernels are built).
if ! info="$("$PY" -c 'import os, torch; print(torch.utils.cmake_prefix_path, os.path.dirname(os.path.dirname(torch.__file__)))')"; then
  echo "cmake_test.sh: $PY cannot import torch (set PYTHON to a python with torch)" >&2
  exit 2
fi
read -r TORCH_PREFIX SITE <<<"$info"
args=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DETRAIN_PYTHON="$PY")
NVRTC="$(ls "$SITE"/nvidia/cu*/lib/libnvrtc.so.[0-9]* 2>/dev/null | grep -v builtins | head -n1 || true)"
CUDA_ROOT="${CUDA_HOME:-/usr/local/cuda}"
if [ -n "$NVRTC" ] && [ -x "$CUDA_ROOT/bin/nvcc" ]; then
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_ROOT" -DCUDA_nvrtc_LIBRARY="$NVRTC")
  export LD_LIBRARY_PATH="$(dirname "$NVRTC")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

set -x
cmake -S "$ROOT" -B "$BUILD_DIR" "${args[@]}" "$@"
cmake --build "$BUILD_DIR" -j"$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure
