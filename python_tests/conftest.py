import os

import pytest
import torch

# Without a GPU, triton kernels run in triton's CPU interpreter (python_tests/test_lowfreq_triton.py). The variable
# must be set before triton is first imported, which importing efficienttrain_ext does.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import efficienttrain_ext as et  # noqa: E402


def cuda_available() -> bool:
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_kernels() -> bool:
    return torch.cuda.is_available() and et.built_with_cuda()


# The op suites run on every device there is: the CPU always, CUDA when a GPU and the CUDA kernels are present.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _cuda_kernels(),
                                                                 reason="needs a CUDA GPU and the CUDA kernels"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def gen():
    g = torch.Generator().manual_seed(1234)
    return g
