#!/usr/bin/env bash
# The evidence grid of docs/results.md: `etrain compare` over curricula x seeds on Fashion-MNIST at 64 px
# (upscaled from 28) and at its native 28 px (full band). Resumable: finished runs are read, an interrupted run
# resumes from its last epoch, so rerunning after a kill continues where it stopped. Hours on 2 CPU cores.
#
#   bash scripts/evidence_grid.sh                 # both settings, one after the other: runs/evidence/fmnist{64,28}/
#   bash scripts/evidence_grid.sh fmnist28        # one setting (fmnist64 or fmnist28)
#   OUT=/elsewhere bash scripts/evidence_grid.sh fmnist64 --set train.threads=2   # extra args go to compare
#   bash scripts/evidence_grid.sh cifar10         # CIFAR-10 at 32 px, CNN and ViT: runs/evidence/cifar10/{cnn,vit}/
#   bash scripts/evidence_grid.sh flowers112      # flower photos at 112 px: runs/evidence/flowers112/{cnn,vit}/
#   CIFAR=/data/cifar10-jpg.tar.gz FLOWERS=/data/flowers144.tar.gz ...           # data (default ../shared/data/)
#   bash scripts/evidence_grid.sh record cifar10  # copy OUT's finished photo-grid runs into docs/data/evidence_runs/
#
# The photo grids outlast the machines they run on, so their finished runs are kept in the repository
# (docs/data/evidence_runs/<setting>/<model>/<curriculum>/seed<k>/: config, schedule, metrics and summary, no
# checkpoints) with `record`, and a grid starts by copying them into OUT (never over a run there): `etrain compare`
# then reads them as finished (same configuration) and trains only the runs still missing.
#
# The photo grids (issue 25, ~11 CPU-hours for CIFAR-10 on one core): `none` at its full budget and cut to 0.7 /
# 0.5 of it (its own cosine), EfficientTrain, EfficientTrain++ at budgets 0.5 / 0.7 / 1.0, and the linear
# progressive-resizing ramp at EfficientTrain's compute; seeds 0, 1, 2. Work order: seed 0 of every curriculum for
# the CNN, then for the ViT, then seed 1 of both, ... (each step runs `compare --seeds 0..k`, which reads the
# finished runs and rewrites compare.md), so an interrupted grid holds whole comparisons.
#
# Seeds run one after the other (seed 0 of every curriculum first), so a grid cut short has whole comparisons.
# After each setting: `etrain analyze` of the seed-0 baseline and EfficientTrain models (filtered validation
# accuracy, CKA) into <setting>/analysis/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${ETRAIN_PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence}
etrain() { "$PY" -m efficienttrain_ext.cli "$@"; }
RECORDS=${RECORDS:-docs/data/evidence_runs}  # relative to the repository root
which=all
case "${1:-}" in fmnist64|fmnist28|all|cifar10|flowers112|record) which=$1; shift ;; esac
CIFAR=${CIFAR:-../shared/data/cifar10-jpg.tar.gz}
FLOWERS=${FLOWERS:-../shared/data/flowers144.tar.gz}
CPHOTO=none,efficienttrain,none@cost=0.7,progressive@cost=efficienttrain,efficienttrain++@cost=0.7,none@cost=0.5
CPHOTO=$CPHOTO,efficienttrain++@cost=0.5,efficienttrain++@cost=1.0

record() {  # setting: OUT's finished runs (summary.json written) -> RECORDS, small files only
  local setting=$1 summary run dest n=0
  for summary in "$OUT/$setting"/*/*/seed*/summary.json; do
    [ -f "$summary" ] || continue
    run=$(dirname "$summary")
    dest=$RECORDS/$setting/${run#"$OUT/$setting/"}
    mkdir -p "$dest"
    cp "$run"/config.yaml "$run"/schedule.json "$run"/summary.json "$run"/summary.txt "$run"/metrics.csv \
      "$run"/metrics.jsonl "$dest"/
    n=$((n + 1))
  done
  echo "recorded $n finished $setting runs in $RECORDS/$setting"
}

photo_grid() {  # setting, data root, then extra compare args
  local setting=$1 root=$2 seeds="" s model; shift 2
  echo "== $setting (data $root)"
  if [ -d "$RECORDS/$setting" ]; then  # the runs finished on earlier machines: read, not retrained
    mkdir -p "$OUT/$setting"
    cp -rn "$RECORDS/$setting/." "$OUT/$setting/"
  fi
  for s in 0 1 2; do
    seeds=${seeds:+$seeds,}$s
    for model in cnn vit; do
      local cfg=configs/${setting}_evidence.yaml
      [ "$model" = vit ] && cfg=configs/${setting}_evidence_vit.yaml
      etrain compare -c "$cfg" --curricula "$CPHOTO" --seeds "$seeds" --output "$OUT/$setting/$model" \
        --set data.root="$root" "$@"
    done
  done
}
case "$which" in
  record)
    case "${1:-}" in cifar10|flowers112) record "$1"; exit ;; esac
    echo "usage: bash scripts/evidence_grid.sh record cifar10|flowers112" >&2; exit 2 ;;
  cifar10) photo_grid cifar10 "$CIFAR" "$@"; exit ;;
  flowers112) photo_grid flowers112 "$FLOWERS" "$@"; exit ;;
esac

# 13b: the same schedule with antialiased bilinear down-sampling instead of the low-frequency crop;
# none@cost / progressive@cost: the final size with fewer epochs / a linear ramp (13c), both at EfficientTrain's
# predicted compute; efficienttrain++ last (its budget-normalised schedule runs ~2.2x the epochs)
C64=none,efficienttrain,none@cost=efficienttrain,progressive@cost=efficienttrain,efficienttrain@resize=bilinear
C64=$C64,efficienttrain++
C28=none,efficienttrain,none@cost=efficienttrain

if [ "$which" != fmnist28 ]; then
  echo "== Fashion-MNIST at 64 px (upscaled)"
  etrain compare -c configs/fashion_mnist_evidence.yaml --curricula "$C64" --seeds 0,1 --output "$OUT/fmnist64" "$@"
  etrain analyze "$OUT/fmnist64/none/seed0" "$OUT/fmnist64/efficienttrain/seed0" --labels none,efficienttrain \
    --lowpass 2,4,6,8,12,16,24 --highpass 2,4,8,12,16 --cka --cka-images 1000 --output "$OUT/fmnist64/analysis"
fi
if [ "$which" != fmnist64 ]; then
  echo "== Fashion-MNIST at 28 px (native, full band)"
  etrain compare -c configs/fashion_mnist28_evidence.yaml --curricula "$C28" --seeds 0,1 --output "$OUT/fmnist28" "$@"
  etrain analyze "$OUT/fmnist28/none/seed0" "$OUT/fmnist28/efficienttrain/seed0" --labels none,efficienttrain \
    --lowpass 2,4,6,8,10,12 --highpass 2,4,6,8,10 --cka --cka-images 1000 --output "$OUT/fmnist28/analysis"
fi
