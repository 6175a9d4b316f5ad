"""Properties of the build itself."""

import torch

import efficienttrain_ext as et


def test_library_loaded_and_ops_registered():
    assert hasattr(torch.ops.etrain, "lowfreq_crop") and hasattr(torch.ops.etrain, "lowfreq_pad")
    assert isinstance(et.built_with_cuda(), bool)


def test_cuda_kernels_present_when_gpu_present():
    if torch.cuda.is_available():
        assert et.built_with_cuda(), "a GPU is present but the library was built without CUDA kernels"
