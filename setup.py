"""Build efficienttrain_ext: the C++ ops always, the CUDA ops when CUDA is available or FORCE_CUDA=1.

Environment:
  FORCE_CUDA=1          build the CUDA kernels even without a GPU (a compile problem is then an error)
  FORCE_CUDA=0          never build them (CPU-only library)
  TORCH_CUDA_ARCH_LIST  architectures to compile for (e.g. "9.0"); unset with no GPU visible: the documented
                        default of buildtools/cuda_arch.py (8.0;9.0;10.0;12.0+PTX)
  MAX_JOBS              parallel compile jobs (ninja)
  CUDA_HOME             the CUDA toolkit; unset: buildtools/cuda_home.py finds it (nvcc on PATH, /usr/local/cuda)
"""

import glob
import os
import sys
import sysconfig

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from buildtools.cuda_arch import ArchError, resolve_arch_list  # noqa: E402
from buildtools.cuda_home import find_cuda_home  # noqa: E402

# torch reads CUDA_HOME when cpp_extension is imported; its own guess from an nvcc wrapper on PATH links nowhere
if os.environ.get("FORCE_CUDA") != "0" and not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
    _toolkit = find_cuda_home(os.environ)
    if _toolkit:
        os.environ["CUDA_HOME"] = _toolkit
        print(f"efficienttrain_ext: CUDA_HOME not set, using the CUDA toolkit at {_toolkit}")

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda() -> bool:
    flag = os.environ.get("FORCE_CUDA")
    if flag is not None and flag.strip() not in ("", "1", "0"):
        raise SystemExit(f"FORCE_CUDA must be 0 or 1, got {flag!r}")
    if flag == "0":
        return False
    if flag == "1":
        if CUDA_HOME is None or torch.version.cuda is None:
            raise SystemExit(
                "FORCE_CUDA=1 but no CUDA toolkit (CUDA_HOME) or a CPU-only torch was found: "
                f"CUDA_HOME={CUDA_HOME}, torch.version.cuda={torch.version.cuda}"
            )
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


def _cuda_include_dirs() -> list[str]:
    # pip's CUDA wheels carry headers (cusparse.h, cublas_v2.h, ...) that torch's CUDA headers include.
    site = sysconfig.get_paths()["purelib"]
    return sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))


def _sources(ext: str) -> list[str]:
    # Every op family's kernels; csrc/tests holds the C++ tests of the CMake build, not library code.
    found = glob.glob(os.path.join("csrc", "**", f"*.{ext}"), recursive=True)
    return sorted(p for p in found if not p.startswith(os.path.join("csrc", "tests", "")))


def _set_arch_list() -> None:
    # torch finds no architecture when no GPU is visible (IndexError deep in its build): choose one here
    try:
        archs = resolve_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), torch.cuda.device_count(),
                                  torch.cuda.get_arch_list(), os.path.join(CUDA_HOME, "bin", "nvcc"))
    except ArchError as e:
        raise SystemExit(f"efficienttrain_ext: {e}") from None
    if archs is not None:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs


def _extension():
    with_cuda = _want_cuda()
    sources = _sources("cpp")
    cxx = ["-O3", "-std=c++20", "-fdiagnostics-color=always"]
    macros = [("Py_LIMITED_API", "0x030A0000")]
    if with_cuda:
        _set_arch_list()
        sources += _sources("cu")
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        return CUDAExtension(
            "efficienttrain_ext._C",
            sources,
            include_dirs=[os.path.join(HERE, "csrc")] + _cuda_include_dirs(),
            define_macros=macros + [("ETRAIN_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            py_limited_api=True,
        )
    return CppExtension(
        "efficienttrain_ext._C",
        sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        define_macros=macros,
        extra_compile_args={"cxx": cxx},
        py_limited_api=True,
    )


setup(
    name="efficienttrain_ext",
    version="0.1.0",
    description="EfficientTrain / EfficientTrain++ curriculum learning as a PyTorch C++/CUDA extension",
    packages=find_packages(include=["efficienttrain_ext", "efficienttrain_ext.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "pyyaml", "pydantic>=2", "tqdm", "matplotlib", "timm>=1.0"],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "hypothesis", "scikit-image", "tensorboard"],
        "detection": ["mmengine==0.10.7", "mmdet==3.3.0"],
        # data.loader: dali (NVIDIA DALI, CUDA 13 build; its CPU backend runs without a GPU), data.dataset: wds
        "data": ['nvidia-dali-cuda130; platform_system == "Linux"', "webdataset"],
        "demo": ["scikit-image", "scikit-learn"],  # scripts/make_photo_patches.py
        "integrations": ["lightning>=2.4"],  # efficienttrain_ext.integrations.lightning
    },
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
    entry_points={"console_scripts": ["etrain=efficienttrain_ext.cli:main"]},
)
