# Shared by every detector base in this directory (none of these keys exists in mmdet's configs, so this file can
# sit next to an mmdet base in one `_base_` list).
custom_imports = dict(imports=['etrain_mmdet'], allow_failed_imports=False)

# Backbone weights: an `etrain train` run dir / checkpoint, an export from detection/tools/export_mmdet.py, or a
# timm state dict; None = random init. Or `--backbone-weights PATH [--ema]` on detection/train.py.
pretrained = None
weights = 'auto'  # etrain checkpoints: 'ema' | 'model' | 'auto' (EMA when present)

# AdamW as in the Swin / ConvNeXt detection recipes (mmdet's swin configs). A config takes it with
# `optim_wrapper = dict(_base_.adamw_optim_wrapper, _delete_=True)` (replacing mmdet's SGD).
adamw_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'absolute_pos_embed': dict(decay_mult=0.0),
                                    'relative_position_bias_table': dict(decay_mult=0.0)}),
    clip_grad=None)
