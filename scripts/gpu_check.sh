#!/usr/bin/env bash
# Build, test and benchmark everything CUDA in one call on a machine with a GPU (one build, sm_90 unless
# TORCH_CUDA_ARCH_LIST says otherwise), and pack every log and result into OUT_DIR/gpu_results.tgz.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]          (uses the python3 that has torch; PYTHON overrides)
#
# Sized for one device call of at most 10 minutes: the whole script keeps to DEADLINE_S (default 540 s): every step
# has its own time limit (seconds, below), cut to what is left of the deadline, and a step with under 20 s left is
# skipped; the most valuable steps run first, and the archive is rewritten after each step (checkpoints left out),
# so a call cut short still returns what ran. Only a missing GPU, a failed build or missing wheels stop the script;
# every other step runs even when an earlier one failed. OUT_DIR gets three files: summary.txt (one line per step:
# status and seconds), gpu_results.tgz (all logs, JSON and CSV results) and versions.txt. Exit status: non-zero when
# any step failed or was skipped.
#   1. versions (pip show pillow timm torch triton, nvidia-smi) and the build (~2-4 min on a fresh machine: a
#      build made elsewhere does not load, the GPU image has another torch)
#   2. one `etrain train` epoch with evaluation and a checkpoint under torchrun with NCCL (train.distributed=always:
#      every collective and DDP of a multi-GPU run, on one GPU)
#   3. the CUDA cases of the op suites; 4. the Triton/cuBLAS crop tests (CUDA vs CPU, capture, streams, compile)
#   5. one training epoch under torch.cuda.set_sync_debug_mode("error") (scripts/sync_debug_epoch.py)
#   6. bench_gpu: crop per backend and precision vs torch.fft and copy bandwidth, triton tile sweep;
#      bench_gpu --augment
#   7. scripts/bench_step.py (img/s per stage size, eager and channels_last); 8. the loader benchmark
#   9. scripts/gpu_evidence.sh (the CIFAR-10 GPU grid) when ETRAIN_GPU_EVIDENCE=1, with what is left; it fits
#      better as a second call on the still-warm machine (the build stays there):
#        run(command='bash scripts/gpu_check.sh "$OUT"', carry=[".whl"])
#        run(command='bash scripts/gpu_evidence.sh "$OUT"', carry=[".whl", ".carry"])
# A machine without a package registry: run `bash scripts/gpu_wheels.sh` where pip works and bring .whl/ along; the
# script installs those wheels (pydantic) into a temporary folder when the interpreter lacks them.
set -uo pipefail
out=${1:-gpu_results}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # resolved before the cd below, so a relative OUT_DIR is relative to the caller
. "$(dirname "$0")/abs_path.sh"
py="$(abs_python "${PYTHON:-python3}")" || exit 1
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
logs=$(mktemp -d /tmp/etrain_gpu.XXXXXX)
: > "$out/summary.txt"
failed=()

deadline=${DEADLINE_S:-540}
. scripts/gpu_steps.sh  # after the cd: the repository root
need_pydantic "$py" "$logs" || exit 1

pack() { pack_logs "$out/gpu_results.tgz" -C "$logs" .; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
  "$py" -m pip show pillow timm torch triton 2>/dev/null | grep -E "^(Name|Version):"
  "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
    torch.version.cuda, "available", torch.cuda.is_available())'
} 2>&1 | tee "$out/versions.txt"
cp "$out/versions.txt" "$logs/"
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "torch sees no CUDA GPU: stopping" | tee -a "$out/summary.txt"
  exit 1
fi

export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
step build 300 build.log "$py" setup.py build_ext --inplace
if [ "${#failed[@]}" -gt 0 ] || ! "$py" -c 'import sys, efficienttrain_ext as et; print(et.info());
sys.exit(0 if et.built_with_cuda() else 1)' 2>&1 | tee -a "$logs/build.log"; then
  echo "the build failed or has no CUDA kernels: stopping" | tee -a "$out/summary.txt"
  pack
  exit 1
fi

pytest=("$py" -m pytest -q -p no:cacheprovider -ra --continue-on-collection-errors)
"$py" -c "import pytest_benchmark" 2>/dev/null && pytest+=(--benchmark-disable)

# A few hundred real photos as an ImageFolder (scikit-image's samples) for the NCCL epoch and the loader benchmark.
photos=/tmp/etrain_photos
step "photo folder" 60 photos.log "$py" scripts/make_photo_folder.py "$photos" --per-class 48 --val-per-class 4
# torchrun, one process, NCCL: the epoch-end statistics, evaluation sums, file union, checkpoint RNG gather and
# barriers of engine/collectives.py, and DDP, as a multi-GPU run has them
step "NCCL epoch" "${ETRAIN_T_NCCL:-120}" nccl_epoch.log bash -c '"$0" -m torch.distributed.run --standalone \
  --nproc_per_node 1 -m efficienttrain_ext train --dataset imagefolder --data-root "$1" --model resnet10t \
  --curriculum efficienttrain --epochs 2 --final-size 64 --batch-size 16 --workers 4 --device cuda \
  --set train.distributed=always --set train.compile=off --set train.progress=false --output "$2" --name nccl &&
  "$0" -c "import sys, json, torch; from efficienttrain_ext.engine.checkpoint import load
rows = [json.loads(l) for l in open(sys.argv[1] + \"/metrics.jsonl\")]; ck = load(sys.argv[1])
assert len(rows) == 2 and ck[\"epoch\"] == 2 and ck[\"world_size\"] == 1, (rows, ck[\"epoch\"])
print(\"NCCL epoch ok:\", [(r[\"size\"], r[\"train_images\"], r[\"top1\"]) for r in rows])" "$2/nccl"' \
  "$py" "$photos" "$logs/runs"
step "op suites, CUDA cases" "${ETRAIN_T_OPS:-120}" tests_ops.log "${pytest[@]}" --maxfail=20 -k cuda \
  python_tests/test_lowfreq_ops.py python_tests/test_augment_ops.py
step "triton crop tests" "${ETRAIN_T_TRITON:-120}" tests_triton.log "${pytest[@]}" python_tests/test_lowfreq_triton.py
step "sync debug epoch" "${ETRAIN_T_SYNC:-90}" sync_debug_epoch.log "$py" scripts/sync_debug_epoch.py --device cuda \
  --steps 12
step "bench lowfreq" "${ETRAIN_T_BENCH:-100}" bench_gpu.md "$py" scripts/bench_gpu.py --profile --sweep \
  --json "$logs/bench_gpu.json"
step "bench augment" 60 bench_gpu_augment.md "$py" scripts/bench_gpu.py --augment --json "$logs/bench_augment.json"
step "bench step" "${ETRAIN_T_STEP:-100}" bench_step.log "$py" scripts/bench_step.py --device cuda \
  --models resnet50,deit_small --modes eager,channels_last --batch 128 --steps 15 --budget-s 70 \
  --out "$logs/bench_step"
step "bench loader" 60 bench_loader.log "$py" scripts/bench_loader.py --root "$photos" --devices cpu --workers 8,16 --images 640 \
  --batch 160 --model resnet50 --model-device cuda --model-batch 160 --out "$logs/bench_loader_gpu"
if [ "${ETRAIN_GPU_EVIDENCE:-0}" = 1 ] && [ -f scripts/gpu_evidence.sh ]; then
  # its grids get what is left after its CUDA tests (90 s) and its report (~30 s)
  left=$((deadline - SECONDS - 120))
  BUDGET_S=$((left > 20 ? left : 20)) DEADLINE_S=$((deadline - SECONDS - 20)) step "gpu evidence" "${ETRAIN_T_EVIDENCE:-360}" gpu_evidence.log \
    bash scripts/gpu_evidence.sh "$logs/evidence"
fi

echo "=== summary"
cat "$out/summary.txt"
cp "$out/summary.txt" "$logs/"
pack
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
