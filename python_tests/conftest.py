import pytest
import torch

import efficienttrain_ext as et


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
