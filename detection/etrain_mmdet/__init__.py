"""mmdet glue for efficienttrain_ext: importing this registers ``TimmBackbone`` in mmdet's ``MODELS`` and
``TimmLayerDecayOptimizerConstructor`` in its ``OPTIM_WRAPPER_CONSTRUCTORS``.

Use in a config with ``custom_imports = dict(imports=['etrain_mmdet'], allow_failed_imports=False)`` (with
``detection/`` on ``sys.path``, which ``detection/train.py`` and ``detection/test.py`` arrange).
"""

from .weights import EXPORT_FORMAT, WeightsError, load_source  # noqa: F401  (no mmdet needed)

try:
    from .backbone import TimmBackbone  # noqa: F401
    from .layer_decay import TimmLayerDecayOptimizerConstructor  # noqa: F401
except ImportError as e:  # pragma: no cover - mmdet/mmengine absent
    _IMPORT_ERROR = e

    def __getattr__(name):
        if name in ("TimmBackbone", "TimmLayerDecayOptimizerConstructor"):
            raise ImportError(f"{name} needs mmdet and mmengine (bash scripts/install_detection.sh): {_IMPORT_ERROR}")
        raise AttributeError(name)

__all__ = ["TimmBackbone", "TimmLayerDecayOptimizerConstructor", "WeightsError", "load_source", "EXPORT_FORMAT"]
