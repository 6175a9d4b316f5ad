# Sourced by scripts/gpu_check.sh and scripts/gpu_evidence.sh: the steps of a GPU call that must keep to the
# device's time and return its results. The caller sets out (OUT_DIR), logs (a temporary folder), deadline (seconds
# since the script started that the whole call keeps to), failed=() and a function pack.

# need_pydantic PYTHON LOGS: the engine's typed config needs pydantic; a GPU image without a package registry gets
# it from the wheels of scripts/gpu_wheels.sh in .whl/ (installed into LOGS/site). Fails, saying why, without it:
# every later step would die on `import pydantic`.
need_pydantic() {
  local py=$1 site=$2/site
  "$py" -c "import pydantic" 2>/dev/null && return 0
  if [ -d .whl ] && "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl; then
    export PYTHONPATH="$PYTHONPATH:$site"
    "$py" -c "import pydantic" && return 0
  fi
  echo "pydantic does not import and .whl/ did not provide it: run 'bash scripts/gpu_wheels.sh' where pip works" \
    "and carry .whl" | tee -a "$out/summary.txt"
  return 1
}

# pack_logs TGZ TAR_ARGS...: the folders TAR_ARGS name (e.g. -C "$logs" .), less checkpoints, plots and the wheels'
# site, into TGZ; written aside and renamed, so a call killed mid-pack still returns the previous whole archive.
# Checkpoints would make it too big to come back.
pack_logs() {
  local tgz=$1 rc
  shift
  tar -czf "$tgz.part" --exclude=./site --exclude='*.pt' --exclude='*.png' "$@" 2>/dev/null
  rc=$?
  if [ "$rc" -le 1 ]; then mv -f "$tgz.part" "$tgz"; else rm -f "$tgz.part"; fi  # 1: a file changed while read
}

# step_limit LIMIT DEADLINE: LIMIT cut to what is left before DEADLINE (less 15 s for packing); fails when under
# 20 s would be left.
step_limit() {
  local left=$(($2 - SECONDS - 15))
  [ "$left" -ge 20 ] || return 1
  echo $(($1 < left ? $1 : left))
}

# step NAME SECONDS LOG CMD...: CMD under a time limit (cut to the deadline), output to the terminal and $logs/LOG;
# its status and seconds appended to $out/summary.txt; the archive repacked.
step() {
  local name=$1 limit=$2 log=$3 t0=$SECONDS rc
  shift 3
  limit=$(step_limit "$limit" "$deadline") || {
    echo "=== $name: skipped (deadline ${deadline} s reached)" | tee -a "$out/summary.txt"
    failed+=("$name (skipped)")
    return 0
  }
  echo "=== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$logs/$log"
  rc=${PIPESTATUS[0]}
  local status=ok
  [ "$rc" -eq 0 ] || status="FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ", time limit"))"
  echo "=== $name: $status ($((SECONDS - t0)) s)" | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || failed+=("$name")
  pack
  return 0
}
