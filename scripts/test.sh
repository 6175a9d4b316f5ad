#!/usr/bin/env bash
# Set up (venv, dependencies, build) and run every test: the C++ tests through CMake/ctest and the pytest
# suite, benchmarks included (pytest-benchmark prints their table). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PYTHON=.venv/bin/python bash scripts/cmake_test.sh
.venv/bin/python -m pytest python_tests "$@"
