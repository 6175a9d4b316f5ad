"""Properties of the build itself."""

import pytest
import torch

import efficienttrain_ext as et


def test_library_loaded_and_ops_registered():
    assert hasattr(torch.ops.etrain, "lowfreq_crop") and hasattr(torch.ops.etrain, "lowfreq_pad")
    assert isinstance(et.built_with_cuda(), bool)


def test_cuda_kernels_present_when_gpu_present():
    if torch.cuda.is_available():
        assert et.built_with_cuda(), "a GPU is present but the library was built without CUDA kernels"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensor_on_cpu_only_build_raises():
    # scripts/gpu_check.sh runs this file against a FORCE_CUDA=0 build on a GPU machine.
    if et.built_with_cuda():
        pytest.skip("this build has CUDA kernels")
    x = torch.randn(2, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="built without CUDA"):
        et.lowfreq_crop(x, 4)
    with pytest.raises(RuntimeError, match="built without CUDA"):
        torch.ops.etrain.lowfreq_pad(x, [16, 16])
