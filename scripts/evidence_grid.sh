#!/usr/bin/env bash
# The evidence grid of docs/results.md: `etrain compare` over the curricula x seeds on Fashion-MNIST at 64 px
# (upscaled) and at its native 28 px. Resumable: finished runs are read, an interrupted run resumes from its last
# epoch, so rerunning the script after a kill continues where it stopped. Hours on 2 CPU cores.
#
#   bash scripts/evidence_grid.sh                   # writes runs/evidence/{fmnist64,fmnist28}/
#   OUT=/elsewhere bash scripts/evidence_grid.sh --set train.threads=2   # extra args go to every compare
#
# Order: one seed of the main 64 px curricula first, then the 28 px setting, then everything at both seeds, so a
# run cut short still has complete comparisons.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${ETRAIN_PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence}
etrain() { "$PY" -m efficienttrain_ext.cli "$@"; }

MAIN=none,efficienttrain,none@cost=efficienttrain,progressive@cost=efficienttrain,efficienttrain@resize=bilinear
ALL=$MAIN,efficienttrain++

echo "== 1/3: 64 px, seed 0, without efficienttrain++"
etrain compare -c configs/fashion_mnist_evidence.yaml --curricula "$MAIN" --seeds 0 --output "$OUT/fmnist64" "$@"
echo "== 2/3: 28 px (full band), seeds 0,1"
etrain compare -c configs/fashion_mnist28_evidence.yaml --curricula none,efficienttrain,none@cost=efficienttrain \
  --seeds 0,1 --output "$OUT/fmnist28" "$@"
echo "== 3/3: 64 px, all curricula, seeds 0,1"
etrain compare -c configs/fashion_mnist_evidence.yaml --curricula "$ALL" --seeds 0,1 --output "$OUT/fmnist64" "$@"
