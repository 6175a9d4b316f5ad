"""Where the CUDA toolkit is, decided before torch's extension builder guesses.

torch takes ``CUDA_HOME`` / ``CUDA_PATH``, else the directory above ``nvcc`` on PATH, else ``/usr/local/cuda``. When
``nvcc`` on PATH is a wrapper script outside the toolkit (``/usr/local/bin/nvcc`` running
``/usr/local/cuda-13.0/bin/nvcc``, as on this project's machines), that guess is ``/usr/local``: compiling works
(the wrapper finds its toolkit) but linking fails with ``cannot find -lcudart``. :func:`find_cuda_home` only
accepts a directory that holds a toolkit (``include/cuda_runtime.h``), trying the same places in torch's order
and then the real path of ``nvcc``.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, Mapping

__all__ = ["find_cuda_home", "is_toolkit"]


def is_toolkit(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def find_cuda_home(environ: Mapping[str, str], which: Callable[[str], str | None] = shutil.which,
                   default: str = "/usr/local/cuda") -> str | None:
    """The toolkit directory, or None when there is none. A CUDA_HOME / CUDA_PATH the user set is returned as it
    is (their choice; torch reports what is wrong with it)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            return environ[var]
    candidates = []
    nvcc = which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.abspath(nvcc))))
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        try:  # a wrapper script: the toolkit nvcc it runs (`exec /usr/local/cuda-13.0/bin/nvcc "$@"`)
            with open(nvcc, "rb") as f:
                head = f.read(4096)
            if head.startswith(b"#!"):
                for word in head.decode(errors="replace").split():
                    word = word.strip("'\"")
                    if word.endswith("/bin/nvcc") and os.path.isabs(word):
                        candidates.append(os.path.dirname(os.path.dirname(word)))
        except OSError:
            pass
    candidates.append(default)
    return next((c for c in candidates if is_toolkit(c)), None)
