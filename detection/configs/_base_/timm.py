# Shared by every detector base in this directory (none of these keys exists in mmdet's configs, so this file can
# sit next to an mmdet base in one `_base_` list).
custom_imports = dict(imports=['etrain_mmdet'], allow_failed_imports=False)

# Backbone weights: an `etrain train` run dir / checkpoint, an export from detection/tools/export_mmdet.py, or a
# timm state dict; None = random init. Or `--backbone-weights PATH [--ema]` on detection/train.py.
pretrained = None
weights = 'auto'  # etrain checkpoints: 'ema' | 'model' | 'auto' (EMA when present)
