#!/usr/bin/env bash
# The README's main command: set up (venv, build, Fashion-MNIST), then `etrain compare` a small timm ResNet on
# Fashion-MNIST (upscaled to 64x64) with the EfficientTrain curriculum, the baseline (--curriculum none) and the
# baseline cut to the curriculum's predicted compute (none@cost=efficienttrain: the final size with fewer epochs).
#
#   bash scripts/demo.sh                       # everything (about 10 minutes of training on 2 idle CPU cores)
#   ETRAIN_SKIP_SETUP=1 bash scripts/demo.sh   # reuse an existing .venv and build
#   bash scripts/demo.sh --set train.epochs=2  # extra arguments go to `etrain compare` (so to every run)
#
# This is a 5-epoch demonstration: the final size gets one epoch, too few for the curriculum to catch up; the
# evidence at a length where the schedule has room (20 epochs, 2 seeds, mean ± std) is docs/results.md.
#
# Outputs ($OUT, default runs/demo/), written by `etrain compare` (docs/training.md, "etrain compare"):
#   compare.csv, compare.md, compare.json   one row per curriculum: top-1 / EMA top-1 mean ± std, training time,
#                                           measured and predicted compute
#   runs.csv                                one row per run
#   accuracy_vs_time.png                    top-1 vs training wall time, one curve per curriculum
#   accuracy_vs_cpu_time.png                the same vs the training process's CPU time
#   schedules.png                           B and RandAugment m over the epochs, one curve per curriculum
#   efficienttrain/seed0/, none/seed0/, none@cost=efficienttrain/seed0/
#                                           the runs: metrics.jsonl/csv, summary.txt/json, schedule.json,
#                                           config.yaml, last.pt (and stage*.pt)
set -euo pipefail
. "$(dirname "$0")/abs_path.sh"
# caller-given paths are relative to the caller's directory: made absolute before the cd
[ -z "${ETRAIN_PYTHON:-}" ] || ETRAIN_PYTHON="$(abs_python "$ETRAIN_PYTHON")"
[ -z "${OUT:-}" ] || OUT="$(abs_path "$OUT")"
if [ -n "${PYTHON:-}" ]; then PYTHON="$(abs_python "$PYTHON")"; export PYTHON; fi  # for setup_env.sh
cd "$(dirname "$0")/.."

# setup_env.sh creates .venv, builds the extension and installs the dataset-fashion-mnist package when
# /usr/share/datasets/fashion-mnist is missing (as root with apt-get); otherwise pass --set data.root=DIR.
if [ "${ETRAIN_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup_env.sh
fi

PY=${ETRAIN_PYTHON:-.venv/bin/python}  # not $PYTHON: setup_env.sh uses that to create the venv
OUT=${OUT:-runs/demo}
etrain() { "$PY" -m efficienttrain_ext.cli "$@"; }

echo "== EfficientTrain (B = 46 -> 54 -> 64, m = 9 t/T) vs the baseline (B = 64, m = 9) vs the baseline cut to the"
echo "   curriculum's predicted compute; a rerun skips finished runs (--overwrite retrains them)"
etrain compare -c configs/fashion_mnist_demo.yaml --curricula efficienttrain,none,none@cost=efficienttrain \
  --seeds 0 --output "$OUT" "$@"
