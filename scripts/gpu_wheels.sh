#!/usr/bin/env bash
# Download the wheels a GPU machine without a package registry needs for scripts/gpu_check.sh into .whl/ (ignored
# by git): pydantic and its dependencies (the engine's typed config; the GPU image used on 2026-12-04 had torch 2.11,
# timm, triton, PIL, scikit-image, matplotlib, but no pydantic). For Python 3.12 on x86-64 Linux by default.
# Usage: bash scripts/gpu_wheels.sh [PYTHON_VERSION]      then, on the GPU machine, in the repository root:
#   bash scripts/gpu_check.sh "$OUT"        (it installs .whl/ into a temporary folder when pydantic is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${1:-3.12}
py=${PYTHON:-.venv/bin/python}  # the project's environment (scripts/setup_env.sh), not whatever python3 is first
[ -x "$py" ] || py=python3
# the versions that environment resolved (same config code paths as the tests here)
pins=$("$py" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic_core", "annotated-types", "typing-inspection",
                                             "typing_extensions")))
PY
)
rm -rf .whl  # one version of each package: `pip install .whl/*.whl` refuses two
mkdir -p .whl
# shellcheck disable=SC2086
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
ls .whl
