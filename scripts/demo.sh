#!/usr/bin/env bash
# The README's main command: set up (venv, build, Fashion-MNIST), then train a small timm ResNet on Fashion-MNIST
# (upscaled to 64x64) with the EfficientTrain curriculum and with --curriculum none, and compare them.
#
#   bash scripts/demo.sh                       # everything (about 7 minutes of training on 2 CPU cores)
#   ETRAIN_SKIP_SETUP=1 bash scripts/demo.sh   # reuse an existing .venv and build
#   bash scripts/demo.sh --set train.epochs=2  # extra arguments go to both training runs
#
# Results: runs/demo/{fmnist-efficienttrain,fmnist-baseline}/ (metrics.jsonl/csv, summary.txt, checkpoints) and
# runs/demo/{accuracy_vs_time,schedule}.png. See docs/training.md for what the numbers mean.
set -euo pipefail
. "$(dirname "$0")/abs_path.sh"
# caller-given paths are relative to the caller's directory: made absolute before the cd
[ -z "${ETRAIN_PYTHON:-}" ] || ETRAIN_PYTHON="$(abs_python "$ETRAIN_PYTHON")"
[ -z "${OUT:-}" ] || OUT="$(abs_path "$OUT")"
if [ -n "${PYTHON:-}" ]; then PYTHON="$(abs_python "$PYTHON")"; export PYTHON; fi  # for setup_env.sh
cd "$(dirname "$0")/.."

# setup_env.sh creates .venv, builds the extension and installs the dataset-fashion-mnist package when
# /usr/share/datasets/fashion-mnist is missing (as root with apt-get); otherwise pass --data-root DIR.
if [ "${ETRAIN_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup_env.sh
fi

PY=${ETRAIN_PYTHON:-.venv/bin/python}  # not $PYTHON: setup_env.sh uses that to create the venv
OUT=${OUT:-runs/demo}
etrain() { "$PY" -m efficienttrain_ext.cli "$@"; }

echo "== 1/2: EfficientTrain curriculum (B = 46 -> 54 -> 64, RandAugment m = 9 t/T)"
etrain train -c configs/fashion_mnist_demo.yaml --output "$OUT" --overwrite "$@"

echo "== 2/2: baseline (--curriculum none: B = 64, m = 9 throughout)"
etrain train -c configs/fashion_mnist_demo_baseline.yaml --output "$OUT" --overwrite "$@"

echo "== comparison"
etrain plot "$OUT/fmnist-efficienttrain" "$OUT/fmnist-baseline" -o "$OUT"
