#!/usr/bin/env bash
# MAE pre-training with and without the curriculum, fine-tuning of both, training from scratch, and transfer of a
# supervised curriculum checkpoint and its baseline twin to photo-patches (docs/mae.md has the results).
#   OUT=runs/mae_demo bash scripts/mae_demo.sh            # PYTHON=... to choose the interpreter
# Sizes via env: TRAIN (training images), VAL, PRE_EPOCHS, FT_EPOCHS, TRANSFER_TRAIN, TRANSFER_EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
PYTHON=$(command -v "$PYTHON")
OUT=${OUT:-runs/mae_demo}
TRAIN=${TRAIN:-4000}
VAL=${VAL:-1000}
PRE_EPOCHS=${PRE_EPOCHS:-6}
FT_EPOCHS=${FT_EPOCHS:-3}
TRANSFER_TRAIN=${TRANSFER_TRAIN:-2000}
TRANSFER_EPOCHS=${TRANSFER_EPOCHS:-10}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

# a ViT-Ti/4 cut to 3 blocks of width 64 (2 heads), at 32x32 (8x8 patches of 4 pixels)
MODEL=(--model vit_tiny_patch16_224 --set "model.kwargs={patch_size: 4, depth: 3, embed_dim: 64, num_heads: 2}")
# one compute thread per run: on a machine shared with other work, torch's two intra-op threads wait for each other
# (a 512-image MAE epoch took 80 s with 2 threads and 11 s with 1 while the load average was ~15 on 2 cores)
# short_run_warmup=null: these runs are shorter than their warm-ups (40 / 5 / 20 epochs) and the recorded numbers
# (docs/mae.md) were made warming up throughout, as before issue 27
COMMON=(--final-size 32 --batch-size 64 --workers 1 --output "$OUT" --set train.progress=false
        --set "data.val_subset=$VAL" --set train.threads=1 --set optim.short_run_warmup=null)
FMNIST=(--set "data.train_subset=$TRAIN")
# classification recipe shared by fine-tuning and training from scratch (short runs: RandAugment m9 and label
# smoothing, no mixup/cutmix/erasing)
CLS=(--lr 1e-3 --epochs "$FT_EPOCHS" --set aug.mixup=0 --set aug.cutmix=0 --set aug.reprob=0)
# the fine-tuning recipe the recorded numbers (docs/mae.md) were made with: layer decay 0.75, EMA, clipping 5.0,
# timm's head initialisation (etrain finetune's defaults are MAE's ViT-B recipe since issue 27: 0.65, no EMA, no
# clipping; from an MAE run also its head at std 2e-5 and average pooling, which "${MODEL[@]}" below switches off by
# giving model.kwargs without global_pool: the class token, as recorded)
FT=(--set optim.layer_decay=0.75 --set train.ema=true --set optim.clip_grad=5.0 --set finetune.head_std=null)

etrain() { "$PYTHON" -m efficienttrain_ext "$@"; }

# three independent chains run side by side (on a shared machine, concurrent runs see the same load; compare the
# CPU times in summary.txt / metrics.csv): MAE + fine-tuning per curriculum, and the supervised runs + transfer
mae_chain() {
  etrain mae "${MODEL[@]}" "${COMMON[@]}" "${FMNIST[@]}" --curriculum "$1" --epochs "$PRE_EPOCHS" --lr 1.5e-3 \
    --name "mae-$1"
  etrain finetune --from "$OUT/mae-$1" "${MODEL[@]}" "${FT[@]}" "${COMMON[@]}" "${FMNIST[@]}" "${CLS[@]}" --name "ft-mae-$1"
}
# from scratch (the same ViT, no pre-training) and its curriculum twin: the supervised checkpoints for transfer,
# then both fine-tuned on photo-patches (real photos shipped by scikit-image / scikit-learn; neither run saw them)
supervised_chain() {
  for cur in none efficienttrain; do
    etrain train "${MODEL[@]}" "${COMMON[@]}" "${FMNIST[@]}" "${CLS[@]}" --curriculum "$cur" --name "sup-$cur"
  done
  local photos=$OUT/photo_patches
  [ -d "$photos/train" ] || "$PYTHON" scripts/make_photo_patches.py --out "$photos"
  local transfer=(--dataset imagefolder --data-root "$photos" "${COMMON[@]}" "${CLS[@]}" --epochs "$TRANSFER_EPOCHS"
                  --set "data.train_subset=$TRANSFER_TRAIN")
  for cur in efficienttrain none; do
    etrain finetune --from "$OUT/sup-$cur" "${FT[@]}" "${transfer[@]}" --name "transfer-sup-$cur" &
  done
  wait
  # a second seed of both, and the same ViT trained on photo-patches from random init
  for cur in efficienttrain none; do
    etrain finetune --from "$OUT/sup-$cur" "${FT[@]}" "${transfer[@]}" --seed 1 --name "transfer-sup-$cur-seed1" &
  done
  etrain train "${MODEL[@]}" --curriculum none "${transfer[@]}" --name photo-scratch &
  wait
}
mkdir -p "$OUT"
mae_chain efficienttrain > "$OUT/chain-mae-efficienttrain.log" 2>&1 &
mae_chain none > "$OUT/chain-mae-none.log" 2>&1 &
supervised_chain > "$OUT/chain-supervised.log" 2>&1 &
wait
etrain plot "$OUT"/mae-efficienttrain "$OUT"/mae-none -o "$OUT/plots_mae"
etrain plot "$OUT"/ft-mae-efficienttrain "$OUT"/ft-mae-none "$OUT"/sup-none "$OUT"/sup-efficienttrain -o "$OUT/plots_ft"
etrain plot "$OUT"/transfer-sup-efficienttrain "$OUT"/transfer-sup-none -o "$OUT/plots_transfer"
PYTHONPATH=$PWD "$PYTHON" scripts/mae_demo_table.py "$OUT" | tee "$OUT/tables.md"
