"""The papers' per-model recipes as YAML presets, and which one a model name selects (``etrain train --preset paper``).

The presets live in the repository's ``configs/imagenet/`` (one file per model of the papers' Table 14, named by its
short name: ``resnet50.yaml``, ``swin_tiny.yaml``, ``pvt_v2_b2.yaml``, ...). A model name selects the preset whose
name is its longest prefix ending at ``_``, ``.`` or the end of the name: ``swin_tiny_patch4_window7_224`` ->
``swin_tiny.yaml``, ``deit_small_patch16_224`` -> ``deit_small.yaml``, ``cswin_tiny_224`` -> ``cswin_tiny.yaml``;
``resnet50d`` selects nothing (another model, another recipe).

Under ``--curriculum efficienttrain++`` the presets come from ``configs/imagenet_etpp/`` instead: each includes the
model's Table 14 preset and adds what the authors' EfficientTrain++ script for it changes (LeapLabTHU/EfficientTrain
``_ET_pp_main_*.py``: a 200-epoch budget; DeiT's warm-up over 20% of the schedule; CSWin-B's LAMB).
"""

from __future__ import annotations

import os

from .errors import ConfigError

__all__ = ["PRESETS", "PAPER_PRESET_DIR", "ETPP_PRESET_DIR", "paper_presets", "paper_preset"]

PRESETS = ("paper",)
# configs/imagenet/ of the repository this package sits in
_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PAPER_PRESET_DIR = os.path.join(_CONFIGS, "imagenet")
ETPP_PRESET_DIR = os.path.join(_CONFIGS, "imagenet_etpp")  # the same models under efficienttrain++


def paper_presets(directory: str = PAPER_PRESET_DIR) -> dict[str, str]:
    """Preset name -> file, for every ``*.yaml`` in ``directory``."""
    if not os.path.isdir(directory):
        raise ConfigError(f"the paper presets are not here: {directory} is missing (they ship in the repository's "
                          "configs/imagenet/; give the file with -c instead)")
    return {f[:-5]: os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".yaml")}


def paper_preset(model_name: str, directory: str | None = None, curriculum: str | None = None) -> str:
    """The preset file of ``model_name`` (module docstring), or a :class:`ConfigError` listing the presets.
    ``directory`` defaults to the presets of ``curriculum`` (efficienttrain++: :data:`ETPP_PRESET_DIR`)."""
    if not model_name:
        raise ConfigError("--preset paper picks the recipe from the model name: give --model")
    if directory is None:
        directory = ETPP_PRESET_DIR if curriculum == "efficienttrain++" else PAPER_PRESET_DIR
    presets = paper_presets(directory)
    name = model_name.lower()
    matches = [stem for stem in presets if name == stem or name.startswith((stem + "_", stem + "."))]
    if not matches:
        raise ConfigError(f"no paper preset for model {model_name!r}; presets: {', '.join(presets)} (give a recipe "
                          "with -c FILE.yaml)")
    return presets[max(matches, key=len)]
