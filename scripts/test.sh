#!/usr/bin/env bash
# Set up (venv, dependencies, build, the MMDetection stack) and run every test: the C++ tests through
# CMake/ctest and the pytest suite, benchmarks and detection tests included (pytest-benchmark prints its
# table). Extra arguments go to pytest. ETRAIN_SKIP_DETECTION=1 skips installing mmcv/mmdet (its first build
# takes ~10-25 min on 2 cores; later runs reuse the cached wheel), and the detection tests then skip.
set -euo pipefail
. "$(dirname "$0")/abs_path.sh"
# a caller's relative PYTHON (the interpreter setup_env.sh makes .venv with) is relative to the caller
if [ -n "${PYTHON:-}" ]; then PYTHON="$(abs_python "$PYTHON")"; export PYTHON; fi
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "${ETRAIN_SKIP_DETECTION:-0}" != 1 ]; then
  PYTHON="$PWD/.venv/bin/python" bash scripts/install_detection.sh
fi
PYTHON="$PWD/.venv/bin/python" bash scripts/cmake_test.sh
.venv/bin/python -m pytest python_tests "$@"
