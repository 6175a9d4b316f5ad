"""efficienttrain_ext: EfficientTrain / EfficientTrain++ curriculum learning as a PyTorch C++/CUDA extension."""

from .ops import built_with_cuda, lowfreq_crop, lowfreq_pad, lowpass

__version__ = "0.1.0"
__all__ = ["lowfreq_crop", "lowfreq_pad", "lowpass", "built_with_cuda", "__version__"]
