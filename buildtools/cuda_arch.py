"""Which GPU architectures the CUDA kernels are compiled for.

torch's extension builder picks the architectures of the visible GPUs when ``TORCH_CUDA_ARCH_LIST`` is unset. With
no GPU visible (a CI or build machine) it finds none and fails deep inside ``_get_cuda_arch_flags`` with an
``IndexError``. :func:`resolve_arch_list` decides instead, before torch is asked:

* ``TORCH_CUDA_ARCH_LIST`` set: validated here (form, and that this nvcc can build each entry: a clear error
  instead of torch's ValueError or nvcc's), used as given.
* a GPU visible: torch's own choice (the visible GPUs' architectures) is kept.
* no GPU visible: :data:`DEFAULT_ARCHS`, cut to what this torch and this nvcc can build, the newest with PTX.

Why these defaults: the data-centre GPUs people train on. 8.0 = A100/A30 (its SASS also runs on 8.6/8.9: A10, L4,
L40S, RTX 30/40), 9.0 = H100/H200/GH200, 10.0 = B200/GB200 (also runs on 10.3, B300), 12.0 = RTX PRO 6000 / RTX 50
Blackwell; ``+PTX`` on the newest lets the driver JIT the kernels for anything newer. torch 2.11 and 2.14 (cu130)
ship sm_75 .. sm_120, so all four are available with them; 7.5 (T4, inference) is left out to keep the build short.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Callable, Iterable

DEFAULT_ARCHS = ("8.0", "9.0", "10.0", "12.0")

_ARCH = re.compile(r"^(\d+)\.(\d+)a?(\+PTX)?$")


class ArchError(ValueError):
    """A TORCH_CUDA_ARCH_LIST that cannot be built."""


def parse_arch_list(text: str) -> list[str]:
    """Split ``"8.0;9.0+PTX"`` (``;`` or spaces) and check each entry's form."""
    items = [a for a in re.split(r"[;\s]+", text.strip()) if a]
    if not items:
        raise ArchError("TORCH_CUDA_ARCH_LIST is empty")
    bad = [a for a in items if not _ARCH.match(a) and a not in _NAMED]
    if bad:
        raise ArchError(f"TORCH_CUDA_ARCH_LIST entries {bad} are not architectures like 8.0, 9.0a or 9.0+PTX "
                        f"(or one of {sorted(_NAMED)})")
    return items


# torch's named architectures (torch.utils.cpp_extension expands them itself)
_NAMED = {"Turing", "Ampere", "Ada", "Hopper", "Blackwell", "Ampere+Tegra", "Blackwell+Tegra", "Rubin"}


def _sm(arch: str) -> str:
    major, minor = arch.split("+")[0].rstrip("a").split(".")
    return f"{major}{minor}"


def nvcc_archs(nvcc: str | None) -> set[str] | None:
    """The compute capabilities this nvcc can target (``"90"``, ...), or None when it cannot tell."""
    if not nvcc or not shutil.which(nvcc):
        return None
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = set(re.findall(r"compute_(\d+)", out))
    return found or None


def default_arch_list(torch_archs: Iterable[str], nvcc_supported: set[str] | None) -> list[str]:
    """:data:`DEFAULT_ARCHS` that both this torch (``torch.cuda.get_arch_list()``, e.g. ``sm_90``) and nvcc support;
    the newest one also as PTX. Falls back to the newest sm of torch when none of the defaults is available."""
    torch_sms = {a.split("_", 1)[1] for a in torch_archs if a.startswith("sm_")}
    ok = [a for a in DEFAULT_ARCHS if (not torch_sms or _sm(a) in torch_sms)
          and (nvcc_supported is None or _sm(a) in nvcc_supported)]
    if not ok:
        usable = sorted((s for s in torch_sms if nvcc_supported is None or s in nvcc_supported), key=int)
        if not usable:
            raise ArchError(f"none of the default architectures {list(DEFAULT_ARCHS)} can be built: torch supports "
                            f"{sorted(torch_sms)}, nvcc {sorted(nvcc_supported or [])}; set TORCH_CUDA_ARCH_LIST")
        ok = [f"{usable[-1][:-1]}.{usable[-1][-1]}"]
    ok[-1] += "+PTX"
    return ok


def resolve_arch_list(env_value: str | None, gpu_count: int, torch_archs: Iterable[str], nvcc: str | None,
                      log: Callable[[str], None] = print) -> str | None:
    """The TORCH_CUDA_ARCH_LIST to build with, or None to leave torch's choice (a GPU is visible)."""
    if env_value is not None and env_value.strip() and env_value.strip() != "native":
        items = parse_arch_list(env_value)
        supported = nvcc_archs(nvcc)
        # well-formed but unbuildable (a typo such as 8.5, or too old / new for this nvcc): say so before nvcc does
        bad = [a for a in items if a not in _NAMED and supported is not None and _sm(a) not in supported]
        if bad:
            raise ArchError(f"TORCH_CUDA_ARCH_LIST entries {bad} cannot be built by {nvcc}, which targets "
                            f"{', '.join(sorted(supported, key=int))}")
        return ";".join(items)
    if gpu_count > 0:
        return None
    archs = default_arch_list(torch_archs, nvcc_archs(nvcc))
    log(f"efficienttrain_ext: no GPU visible and TORCH_CUDA_ARCH_LIST unset: building the CUDA kernels for "
        f"{';'.join(archs)} (A100, H100/H200, B200, RTX PRO/50 Blackwell; set TORCH_CUDA_ARCH_LIST to change)")
    return ";".join(archs)
