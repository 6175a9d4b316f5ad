"""Layer-wise lr decay for a timm ConvNeXt inside ``TimmBackbone`` (the ConvNeXt detection recipe).

mmdet's ``LearningRateDecayOptimizerConstructor`` (the ConvNeXt repo's
``object_detection/mmcv_custom/layer_decay_optimizer_constructor.py`` ported to mmengine) only accepts backbones whose class name contains ``ConvNeXt`` and whose parameters are named as in
mmpretrain (``backbone.downsample_layers.i``, ``backbone.stages.i.j``). This constructor renames the timm parameters
(``backbone.body.stem_k``, ``backbone.body.stages_i.downsample``, ``backbone.body.stages_i.blocks.j``) to those names
and then uses mmdet's own layer-id functions, so the layer assignment and the group rule (lr scale
``decay_rate ** (num_layers + 2 - layer_id - 1)``, no weight decay for 1-D tensors and biases) stay the maintained ones.

Config (as the ConvNeXt recipe, with ``constructor`` replaced)::

    optim_wrapper = dict(type='OptimWrapper', constructor='TimmLayerDecayOptimizerConstructor',
                         optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
                         paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
"""

from __future__ import annotations

import re
from typing import List

from mmdet.engine.optimizers.layer_decay_optimizer_constructor import (get_layer_id_for_convnext,
                                                                       get_stage_id_for_convnext)
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

__all__ = ["TimmLayerDecayOptimizerConstructor", "mmpretrain_convnext_name"]

# timm ConvNeXt under TimmBackbone.body (FeatureListNet flattens "stages.0" to "stages_0"; FeatureGetterNet adds "model.")
_TIMM_CONVNEXT = re.compile(r"^backbone\.body\.(?:model\.)?"
                            r"(?:(stem)[._](\d+)|stages[._](\d+)\.(?:(downsample)|blocks\.(\d+)))\.(.+)$")
_OWN_BACKBONE_EXTRAS = ("backbone.out_norms.",)  # TimmBackbone's per-output norms: the recipe's backbone.norm{i}
_DECAY_TYPES = ("layer_wise", "stage_wise")


def mmpretrain_convnext_name(name: str) -> str:
    """``backbone.body.stages_2.blocks.4.conv_dw.weight`` -> ``backbone.stages.2.4.conv_dw.weight`` (mmpretrain /
    ConvNeXt-repo naming, what mmdet's layer-id functions parse). Names outside the backbone pass through unchanged."""
    if not name.startswith("backbone.") or name.startswith(_OWN_BACKBONE_EXTRAS):
        return name
    m = _TIMM_CONVNEXT.match(name)
    if m is None:
        raise ValueError(f"TimmLayerDecayOptimizerConstructor: backbone parameter {name!r} is not part of a timm "
                         "ConvNeXt (stem_k / stages_i.downsample / stages_i.blocks.j)")
    stem, stem_k, stage, downsample, block, rest = m.groups()
    if stem:
        return f"backbone.downsample_layers.0.{stem_k}.{rest}"
    if downsample:
        return f"backbone.downsample_layers.{stage}.{rest}"
    return f"backbone.stages.{stage}.{block}.{rest}"


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TimmLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """mmdet's ``LearningRateDecayOptimizerConstructor`` for ``TimmBackbone(model_name='convnext_*')``.

    ``paramwise_cfg``: ``decay_rate`` (0 < r <= 1), ``num_layers`` (6 for ConvNeXt-T, 12 for S/B/L in the ConvNeXt
    repo's configs) and ``decay_type`` (``layer_wise`` or ``stage_wise``). One param group per (layer id, decay/no
    decay) with ``lr = base_lr * lr_scale`` and ``lr_scale``, ``group_name``, ``param_names`` kept in the group.
    """

    def _checked_cfg(self, module: nn.Module) -> tuple[float, int, str]:
        cfg = self.paramwise_cfg
        unknown = set(cfg) - {"decay_rate", "num_layers", "decay_type"}
        if unknown:
            raise ValueError(f"TimmLayerDecayOptimizerConstructor: unknown paramwise_cfg keys {sorted(unknown)} "
                             "(expected decay_rate, num_layers, decay_type)")
        rate, num_layers, kind = cfg.get("decay_rate"), cfg.get("num_layers"), cfg.get("decay_type", "layer_wise")
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"TimmLayerDecayOptimizerConstructor: decay_rate must be in (0, 1], got {rate!r}")
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 4:
            raise ValueError(f"TimmLayerDecayOptimizerConstructor: num_layers must be an int >= 4, got {num_layers!r}")
        if kind not in _DECAY_TYPES:
            raise ValueError(f"TimmLayerDecayOptimizerConstructor: decay_type must be one of {_DECAY_TYPES}, "
                             f"got {kind!r}")
        backbone = getattr(module, "backbone", None)
        model_name = getattr(backbone, "model_name", None)
        if not (isinstance(model_name, str) and model_name.startswith("convnext")):
            raise ValueError("TimmLayerDecayOptimizerConstructor needs a detector whose backbone is a "
                             f"TimmBackbone(model_name='convnext_*'), got {type(backbone).__name__} {model_name!r}")
        return float(rate), num_layers, kind

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        rate, num_layers, kind = self._checked_cfg(module)
        total = num_layers + 2  # as mmdet / the ConvNeXt repo: ids 0 .. num_layers + 1
        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen weights
            ref_name = mmpretrain_convnext_name(name)
            if kind == "layer_wise":
                layer_id = get_layer_id_for_convnext(ref_name, num_layers)
                if ref_name.startswith("backbone.stages.2.") and layer_id >= num_layers:
                    # the reference would silently give this block a scale > 1
                    raise ValueError(f"TimmLayerDecayOptimizerConstructor: num_layers={num_layers} is too small for "
                                     f"{module.backbone.model_name}: {name} gets layer id {layer_id}; use num_layers >= "
                                     "4 + (depth of stages[2] - 1) // 3 (6 for depth 9, 12 for depth 27)")
            else:
                layer_id = get_stage_id_for_convnext(ref_name, total)
            no_decay = param.ndim == 1 or name.endswith(".bias")
            group_name = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}"
            if group_name not in groups:
                scale = rate ** (total - layer_id - 1)
                groups[group_name] = dict(weight_decay=0.0 if no_decay else self.base_wd, params=[], param_names=[],
                                          lr_scale=scale, group_name=group_name, lr=scale * self.base_lr)
            groups[group_name]["params"].append(param)
            groups[group_name]["param_names"].append(name)
        MMLogger.get_current_instance().info(
            f"TimmLayerDecayOptimizerConstructor ({kind}, rate {rate}, num_layers {num_layers}): "
            + ", ".join(f"{k}: {len(g['params'])} tensors x{g['lr_scale']:.4g}" for k, g in sorted(groups.items())))
        params.extend(groups.values())
