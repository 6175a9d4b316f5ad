"""The paper's Section 4 analysis tools: accuracy on low-/high-pass filtered validation images
(:mod:`.spectral_eval`), linear CKA between the layers of two models (:mod:`.cka`), and ``etrain analyze``
(:mod:`.runner`) for any checkpoint (an etrain run's, or a plain timm state dict: :mod:`.loading`)."""

from .cka import cka_from_grams, cka_matrix, centered_gram, default_layers, layer_grams, linear_cka
from .loading import AnalysedModel, load_model
from .runner import ANALYZE_FILES, run_analyze
from .spectral_eval import FilterSpec, filter_specs, filtered_accuracy

__all__ = ["linear_cka", "centered_gram", "cka_from_grams", "cka_matrix", "default_layers", "layer_grams",
           "AnalysedModel", "load_model", "run_analyze", "ANALYZE_FILES", "FilterSpec", "filter_specs",
           "filtered_accuracy"]
