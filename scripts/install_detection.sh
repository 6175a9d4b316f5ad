#!/usr/bin/env bash
# Install the MMDetection stack (mmcv 2.1.0 with compiled CPU ops, mmengine 0.10.7, mmdet 3.3.0)
# into the project's virtual environment, reproducibly and idempotently.
#
# mmcv 2.1.0 has only a source release and does not build against torch 2.14 as released:
#   1. its setup.py imports pkg_resources (gone from setuptools >= 81)  -> install setuptools<81 first;
#   2. it hard-codes -std=c++14/17 while torch 2.14 headers need C++20  -> patch the sdist's setup.py.
# The built wheel (~32 MB, ~15-25 min on 2 cores) is cached OUTSIDE the repo, keyed on the
# python / torch / mmcv versions, so later runs on the same machine reinstall it in seconds.
#
# Environment:
#   PYTHON       python of the target venv   (default: <repo>/.venv/bin/python)
#   ETRAIN_CACHE cache root                  (default: ${XDG_CACHE_HOME:-~/.cache}/efficienttrain_ext)
#   MAX_JOBS     parallel compiler jobs      (default: 2)
#   FORCE_REBUILD=1  ignore a cached wheel
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$REPO/scripts/abs_path.sh"
# absolute: the wheel build below runs inside the unpacked sdist
PYTHON="$(abs_python "${PYTHON:-$REPO/.venv/bin/python}")"
MMCV_VERSION="${MMCV_VERSION:-2.1.0}"
MMENGINE_VERSION="0.10.7"
MMDET_VERSION="3.3.0"
CACHE="$(abs_path "${ETRAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/efficienttrain_ext}")"
export MAX_JOBS="${MAX_JOBS:-2}"

log() { echo "[install_detection $(date -u +%H:%M:%S)] $*"; }

[ -x "$PYTHON" ] || { echo "error: python not found at $PYTHON (set PYTHON=...)" >&2; exit 1; }
PIP=("$PYTHON" -m pip)

PY_TAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_VER="$("$PYTHON" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
KEY="mmcv-${MMCV_VERSION}_${PY_TAG}_torch-${TORCH_VER}_cpuops"
WHEEL_DIR="$CACHE/wheels/$KEY"
log "python=$PYTHON ($PY_TAG) torch=$TORCH_VER cache=$WHEEL_DIR"

# Already installed and working? (mmcv._ext is the compiled-ops module mmdet needs.)
if "$PYTHON" - "$MMCV_VERSION" "$MMENGINE_VERSION" "$MMDET_VERSION" <<'EOF' 2>/dev/null
import sys, importlib.metadata as md
want = dict(zip(("mmcv", "mmengine", "mmdet"), sys.argv[1:]))
for name, ver in want.items():
    if md.version(name) != ver:
        raise SystemExit(1)
import mmcv._ext  # noqa: F401
EOF
then
    log "mmcv $MMCV_VERSION (with ops), mmengine $MMENGINE_VERSION, mmdet $MMDET_VERSION already installed; nothing to do"
    exit 0
fi

# 1. setuptools < 81 (mmcv's setup.py imports pkg_resources).
log "installing setuptools>=77.0.3,<81 (mmcv setup.py needs pkg_resources)"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81" wheel

# 2. Wheel: reuse the cached one or build it from the patched sdist.
mkdir -p "$WHEEL_DIR"
WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [ -n "$WHEEL" ] && [ "${FORCE_REBUILD:-0}" != "1" ]; then
    log "reusing cached wheel $WHEEL"
else
    BUILD="$(abs_path "$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")")"
    trap 'rm -rf "$BUILD"' EXIT
    log "downloading mmcv==$MMCV_VERSION sdist into $BUILD"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    log "patching $SRC/setup.py: -std=c++14/17 -> -std=c++20 ($(grep -c -- '-std=c++1[47]' "$SRC/setup.py") occurrences)"
    sed -i 's/-std=c++1[47]/-std=c++20/g' "$SRC/setup.py"
    log "building wheel (MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$MAX_JOBS); this takes ~15-25 min on 2 cores"
    start=$(date +%s)
    (cd "$SRC" && CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 \
        "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$BUILD/dist" .)
    WHEEL_NAME="$(basename "$(ls "$BUILD"/dist/mmcv-*.whl | head -n1)")"
    # copy then rename so a killed build never leaves a half-written wheel in the cache
    cp "$BUILD/dist/$WHEEL_NAME" "$WHEEL_DIR/.$WHEEL_NAME.tmp"
    mv "$WHEEL_DIR/.$WHEEL_NAME.tmp" "$WHEEL_DIR/$WHEEL_NAME"
    WHEEL="$WHEEL_DIR/$WHEEL_NAME"
    log "built $WHEEL in $(( $(date +%s) - start )) s"
fi

# 3. Install mmcv (from the wheel), mmengine and mmdet (plain mmdet does not pull mmcv).
log "installing $WHEEL"
"${PIP[@]}" install -q --no-deps "$WHEEL"
log "installing mmengine==$MMENGINE_VERSION mmdet==$MMDET_VERSION"
"${PIP[@]}" install -q "mmengine==$MMENGINE_VERSION" "mmdet==$MMDET_VERSION"
# mmcv's own runtime deps (installed --no-deps above)
"${PIP[@]}" install -q addict packaging Pillow pyyaml yapf opencv-python-headless

"$PYTHON" -c 'import mmcv, mmcv._ext, mmengine, mmdet; print("[install_detection] ok: mmcv", mmcv.__version__, "(ops)", "mmengine", mmengine.__version__, "mmdet", mmdet.__version__)'
