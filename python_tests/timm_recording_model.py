"""A timm-registered tiny DeiT that records the size of every training input (for test_timm_recipe.py).

``ETRAIN_RECORD``: file that gets one line per training forward, ``<height> <dtype>``; ``ETRAIN_STOP_AFTER=N``:
raise KeyboardInterrupt at the N+1-th training forward (timm's train.py then ends as if interrupted by Ctrl-C).
"""

from __future__ import annotations

import os

import timm
from timm.models import register_model


@register_model
def recording_deit(pretrained=False, num_classes=1000, **timm_kwargs):
    img_size = timm_kwargs.get("img_size", 96)
    model = timm.create_model("deit_tiny_patch16_224", num_classes=num_classes, img_size=img_size, depth=1,
                              embed_dim=32, num_heads=2)
    seen = [0]

    def record(module, args):
        if not module.training:
            return
        stop = int(os.environ.get("ETRAIN_STOP_AFTER", "0"))
        if stop and seen[0] >= stop:
            raise KeyboardInterrupt
        seen[0] += 1
        with open(os.environ["ETRAIN_RECORD"], "a") as f:
            f.write(f"{args[0].shape[-1]} {args[0].dtype}\n")

    model.register_forward_pre_hook(record)
    return model
