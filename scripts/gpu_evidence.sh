#!/usr/bin/env bash
# The GPU evidence of issue 25: CIFAR-10 on the GPU-resident data path (data.device_cache), bf16, a full-width CIFAR
# ResNet-18 and the small ViT of the CPU grid, curricula none / efficienttrain / efficienttrain++ /
# none@cost=efficienttrain; measured wall time per run and per stage, img/s per stage against the FLOP prediction,
# top-1. The grids get BUDGET_S (default 300 s); the whole call keeps to DEADLINE_S (default 540 s, for one device
# call of at most 10 minutes), the grids' time cut to it. Best run right after scripts/gpu_check.sh on the same,
# still-warm machine, whose CUDA build stays in the tree; otherwise it builds first (~2-4 min of the deadline; a
# build made on another machine does not load there: the GPU image has another torch).
#
#   bash scripts/gpu_evidence.sh [OUT_DIR]        (python3 with torch; PYTHON overrides)
#   run(command='bash scripts/gpu_evidence.sh "$OUT"', carry=[".whl", ".carry"])      (the device tool)
#
# Carry (the tree that travels is limited to 64 MiB; both paths are git-ignored):
#   .carry/cifar10-jpg.tar.gz   cp ../shared/data/cifar10-jpg.tar.gz .carry/      (19.8 MB; CIFAR overrides the path)
#   .whl/                       bash scripts/gpu_wheels.sh, when the GPU machine's python lacks pydantic
#
# Knobs: EPOCHS (10), SEEDS (0; "0,1" for two), BATCH (512), GRIDS ("resnet18 vit": the order they run in),
# BUDGET_S (300), DEADLINE_S (540), DRY_RUN=1 (print the etrain commands, run nothing). The grids run in order, each
# under the time that is left; etrain compare resumes, so a second call on the same machine continues an unfinished
# grid (RUNS=/tmp/etrain_gpu_runs keeps the runs between calls). OUT_DIR gets gpu_evidence.md (the tables of
# scripts/gpu_evidence_report.py, the command and the machine), summary.txt, versions.txt and gpu_evidence.tgz (logs,
# metrics and schedules of every run; no checkpoints).
set -uo pipefail
out=${1:-gpu_evidence}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # resolved before the cd below, so a relative OUT_DIR is relative to the caller
. "$(dirname "$0")/abs_path.sh"
py="$(abs_python "${PYTHON:-python3}")" || exit 1
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ETRAIN_CACHE=${ETRAIN_CACHE:-/tmp/etrain_cache}  # where the archive is unpacked (and its decoded arrays kept)
EPOCHS=${EPOCHS:-10} SEEDS=${SEEDS:-0} BATCH=${BATCH:-512} BUDGET_S=${BUDGET_S:-300} GRIDS=${GRIDS:-resnet18 vit}
CIFAR=$(realpath -m "${CIFAR:-.carry/cifar10-jpg.tar.gz}")
CIFAR_SHA256=d34c68f61cca57aa9144c8f25bda427abb9921bd642d5857a2fc1a6b4416f965
CURRICULA=none,efficienttrain,efficienttrain++,none@cost=efficienttrain
logs=$(mktemp -d /tmp/etrain_gpu_evidence.XXXXXX)
runs=${RUNS:+$(realpath -m "$RUNS")}
runs=${runs:-$logs/runs}  # not under OUT_DIR: only the packed archive of them comes back
: > "$out/summary.txt"
failed=()
deadline=${DEADLINE_S:-540}

# every run on the device path, bf16, no torch.compile (one compilation per stage size would eat the budget),
# one evaluation per epoch at the final size (no extra one at B), threads for the host side left to torch
common=(--set data.device_cache=true --set "data.root=$CIFAR" --set train.amp=bf16 --set train.device=cuda
        --set train.compile=off --set "train.epochs=$EPOCHS" --set "train.batch_size=$BATCH"
        --set train.threads=null --set train.eval_at_stage_size=false --set train.progress=false)
grid_args() {  # ga=(the `etrain compare` arguments of grid $1)
  case $1 in
    resnet18) ga=(-c configs/cifar10_evidence.yaml --set model.name=resnet18_cifar
                  --set "model.kwargs.channels=[64,128,256,512]" --set train.channels_last=true) ;;
    vit) ga=(-c configs/cifar10_evidence_vit.yaml) ;;
    *) echo "unknown grid $1 (GRIDS: resnet18, vit)" >&2; return 1 ;;
  esac
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  for g in $GRIDS; do
    grid_args "$g" || exit 2
    printf '%q ' etrain compare "${ga[@]}" "${common[@]}" --curricula "$CURRICULA" --seeds "$SEEDS" \
      --output "$runs/$g"
    echo
  done
  exit 0
fi

. scripts/gpu_steps.sh  # after the cd: the repository root
need_pydantic "$py" "$logs" || exit 1
pack() {
  local extra=()
  [ "$runs" != "$logs/runs" ] && [ -d "$runs" ] && extra=(-C "$(dirname "$runs")" "$(basename "$runs")")
  pack_logs "$out/gpu_evidence.tgz" -C "$logs" . "${extra[@]}"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
  "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
    torch.version.cuda, "available", torch.cuda.is_available())'
  nproc | sed 's/^/cpu cores: /'
} 2>&1 | tee "$out/versions.txt"
cp "$out/versions.txt" "$logs/"
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "torch sees no CUDA GPU: stopping" | tee -a "$out/summary.txt"
  exit 1
fi
if [ ! -f configs/cifar10_evidence.yaml ]; then
  echo "configs/cifar10_evidence.yaml is missing (the CIFAR-10 presets of issue 25): stopping" |
    tee -a "$out/summary.txt"
  exit 1
fi
if [ ! -f "$CIFAR" ]; then
  echo "no CIFAR-10 archive at $CIFAR: copy ../shared/data/cifar10-jpg.tar.gz to .carry/ and carry it" |
    tee -a "$out/summary.txt"
  exit 1
fi
echo "$CIFAR_SHA256  $CIFAR" | sha256sum -c --quiet - || echo "warning: $CIFAR is not the archive of issue 25"

has_cuda_ops() {
  "$py" -c 'import sys, efficienttrain_ext as et; sys.exit(0 if et.built_with_cuda() else 1)' 2>/dev/null
}
if ! has_cuda_ops; then  # not built on this machine yet: build (this costs a large part of the deadline)
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
  step build 300 build.log "$py" setup.py build_ext --inplace
  if ! has_cuda_ops; then
    echo "the build failed or has no CUDA kernels: stopping" | tee -a "$out/summary.txt"
    pack
    exit 1
  fi
fi

# the device path's own CUDA checks first (equal to the CPU path, no host sync), then the grids
step "device cache CUDA tests" 90 tests_device_cache.log "$py" -m pytest -q -p no:cacheprovider -k cuda \
  python_tests/test_device_cache.py
t_start=$SECONDS
for g in $GRIDS; do
  left=$((BUDGET_S - (SECONDS - t_start)))
  to_deadline=$((deadline - SECONDS - 45))  # the report and the last pack come after the grids
  left=$((left < to_deadline ? left : to_deadline))
  if [ "$left" -lt 20 ]; then
    echo "=== grid $g: skipped (budget spent)" | tee -a "$out/summary.txt"
    continue
  fi
  grid_args "$g" || { failed+=("grid $g"); continue; }
  step "grid $g" "$left" "grid_$g.log" "$py" -m efficienttrain_ext compare "${ga[@]}" "${common[@]}" \
    --curricula "$CURRICULA" --seeds "$SEEDS" --output "$runs/$g"
done

{
  echo "## GPU evidence: CIFAR-10 on the device-resident data path"
  echo
  echo "Command: \`EPOCHS=$EPOCHS SEEDS=$SEEDS BATCH=$BATCH BUDGET_S=$BUDGET_S GRIDS=\"$GRIDS\"" \
    "bash scripts/gpu_evidence.sh\`"
  echo "(per grid: \`etrain compare\` with $CURRICULA; ${common[*]})"
  echo
  echo '```'
  cat "$out/versions.txt"
  echo '```'
  echo
  "$py" scripts/gpu_evidence_report.py "$runs"
  echo
  echo '```'
  cat "$out/summary.txt"
  echo '```'
} > "$out/gpu_evidence.md" 2>&1
cat "$out/gpu_evidence.md"
cp "$out/gpu_evidence.md" "$out/summary.txt" "$logs/"
pack
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed steps: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
