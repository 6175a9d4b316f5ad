"""Extra timm backbones (importing this package registers them with ``timm.create_model``).

* :mod:`.cswin`: CSWin Transformer T/S/B/L (``cswin_tiny_224`` ... ``cswin_large_384``), see docs/models_cswin.md.
* :mod:`.cifar_resnet`: ResNets with a stride-1 stem for 32 px images (``resnet10_cifar``, ``resnet18_cifar``).
"""

from . import cifar_resnet, cswin
from .cswin import CSWinTransformer

__all__ = ["cifar_resnet", "cswin", "CSWinTransformer"]
