"""Whether the compiled extension in the source tree is current, so that re-running set-up does not rebuild it.

pip's PEP 660 editable install compiles in a fresh temporary directory every time (no incremental build), which
with the CUDA kernels for four architectures takes minutes. ``scripts/setup_env.sh`` skips the build when the
stamp written after the last build matches: the same sources (``csrc/``, ``setup.py``, ``buildtools/``), the same
torch and Python, and the same build settings (FORCE_CUDA, TORCH_CUDA_ARCH_LIST, CUDA_HOME, CUDA_PATH).

    python -m buildtools.build_stamp check [ROOT]   # exit 0: current, 1: build needed
    python -m buildtools.build_stamp write [ROOT]   # after a successful build
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import os
import platform
import sys
from typing import Mapping

__all__ = ["STAMP", "SETTINGS", "digest", "is_current", "write"]

STAMP = os.path.join("efficienttrain_ext", ".build_stamp")
SETTINGS = ("FORCE_CUDA", "TORCH_CUDA_ARCH_LIST", "CUDA_HOME", "CUDA_PATH")
_SOURCES = ("setup.py", "buildtools/*.py", "csrc/**/*")


def digest(root: str, environ: Mapping[str, str] = os.environ) -> str:
    h = hashlib.sha256()
    files = sorted({p for pattern in _SOURCES for p in glob.glob(os.path.join(root, pattern), recursive=True)
                    if os.path.isfile(p) and "__pycache__" not in p})
    for path in files:
        h.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "none"
    for key, value in [("torch", torch_version), ("python", platform.python_version()),
                       *((k, environ.get(k, "")) for k in SETTINGS)]:
        h.update(f"{key}={value}\0".encode())
    return h.hexdigest()


def _library(root: str) -> list[str]:
    return glob.glob(os.path.join(root, "efficienttrain_ext", "_C*.so"))


def is_current(root: str, environ: Mapping[str, str] = os.environ) -> bool:
    try:
        with open(os.path.join(root, STAMP)) as f:
            stamp = f.read().strip()
    except OSError:
        return False
    return bool(_library(root)) and stamp == digest(root, environ)


def write(root: str, environ: Mapping[str, str] = os.environ) -> None:
    with open(os.path.join(root, STAMP), "w") as f:
        f.write(digest(root, environ) + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "write"):
        print("\n".join(__doc__.strip().splitlines()[-2:]), file=sys.stderr)
        return 2
    root = os.path.abspath(argv[1] if len(argv) > 1 else ".")
    if argv[0] == "write":
        write(root)
        return 0
    return 0 if is_current(root) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
