"""EfficientTrain inside other people's training loops (above ``engine`` in the layering).

* :mod:`.hooks`: :class:`CurriculumBatch` (one batch at this point of the curriculum: RandAugment at m, the
  low-frequency crop to B, normalisation) and :class:`CurriculumLoader` (every batch of a loader), for a plain loop
  or timm's ``train.py``;
* :mod:`.lightning`: the PyTorch Lightning callback ``EfficientTrain`` (needs ``pip install lightning``; imported
  on its own, ``from efficienttrain_ext.integrations.lightning import EfficientTrain``).

See docs/integrations.md.
"""

from .hooks import IMAGENET_MEAN, IMAGENET_STD, CurriculumBatch, CurriculumLoader

__all__ = ["CurriculumBatch", "CurriculumLoader", "IMAGENET_MEAN", "IMAGENET_STD"]
