"""Extra timm backbones (importing this package registers them with ``timm.create_model``).

* :mod:`.cswin`: CSWin Transformer T/S/B/L (``cswin_tiny_224`` ... ``cswin_large_384``), see docs/models_cswin.md.
"""

from . import cswin
from .cswin import CSWinTransformer

__all__ = ["cswin", "CSWinTransformer"]
