#!/usr/bin/env bash
# Set up everything on a fresh machine: .venv with torch + dependencies, the compiled extension (editable
# install, `etrain` on the venv's PATH) and, when missing, the Fashion-MNIST data package. Idempotent.
#
# Environment: PYTHON (interpreter for the venv, default python3), TORCH_SPEC (default
# "torch==2.14.1 torchvision==0.29.1"), FORCE_CUDA / TORCH_CUDA_ARCH_LIST / MAX_JOBS (passed to the build).
set -euo pipefail
. "$(dirname "$0")/abs_path.sh"
# before the cd: a relative PYTHON is relative to the caller (a name not on PATH only matters without .venv)
py="$(abs_python "${PYTHON:-python3}" 2>/dev/null)" || py=${PYTHON:-python3}
cd "$(dirname "$0")/.."

torch_spec=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
echo "[setup] installing $torch_spec and dependencies"
# shellcheck disable=SC2086
.venv/bin/pip install -q $torch_spec -r requirements.txt

if [ -d /usr/local/cuda ] && [ -z "${CUDA_HOME:-}" ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS=${MAX_JOBS:-2}
# the editable install must point at this checkout (not at another clone's) for the stamp to count
installed_here() { (cd / && "$repo/.venv/bin/python" -c "import importlib.util as u, sys; s = u.find_spec('efficienttrain_ext')
sys.exit(not (s and s.origin.startswith(sys.argv[1] + '/')))" "$repo") 2>/dev/null; }
repo=$PWD
if [ "${ETRAIN_REBUILD:-0}" != 1 ] && .venv/bin/python -m buildtools.build_stamp check && installed_here; then
  echo "[setup] extension up to date (same sources, torch and build settings; buildtools/build_stamp.py): not" \
    "rebuilt (ETRAIN_REBUILD=1 forces it)"
else
  echo "[setup] building the extension (FORCE_CUDA=${FORCE_CUDA:-auto}, TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-auto})"
  start=$(date +%s)
  # --use-pep517: an editable install through setuptools' PEP 660 hook. Without it pip falls back to
  # `setup.py develop`, which setuptools >= 80 turns into a nested `pip install -e . --use-pep517` *with* build
  # isolation, where torch is missing (the build then stops with "No module named 'torch'").
  .venv/bin/pip install -q --no-build-isolation --no-deps --use-pep517 -e .
  .venv/bin/python -m buildtools.build_stamp write
  echo "[setup] built in $(( $(date +%s) - start )) s"
fi
echo "[setup] CUDA kernels: $(.venv/bin/python -c 'import efficienttrain_ext as e; print(e.built_with_cuda())')"

fm=/usr/share/datasets/fashion-mnist
if [ ! -f "$fm/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing the Debian package dataset-fashion-mnist"
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) ||
      echo "[setup] WARNING: could not install dataset-fashion-mnist; pass --data-root to a copy of the IDX files"
  else
    echo "[setup] NOTE: Fashion-MNIST not found under $fm (install dataset-fashion-mnist or use --data-root)"
  fi
fi
