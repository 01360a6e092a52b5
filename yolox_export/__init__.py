"""yolox-export: YOLOX SimOTA label assignment and loss as one static-shape module.

Import needs only torch; onnxruntime and tensorrt are imported lazily by the export runtimes.
"""

from .assignment import Assignment
from .config import LossConfig
from .reference import FastYoloXLoss, MegviiYoloXLoss, MMDetYoloXLoss, RegularYoloXLoss
from .static import PaddedYoloXLoss, StaticYoloXLoss
from .targets import pad_targets, unpad_targets

__version__ = "0.1.0"

__all__ = [
    "Assignment",
    "FastYoloXLoss",
    "LossConfig",
    "MegviiYoloXLoss",
    "MMDetYoloXLoss",
    "PaddedYoloXLoss",
    "RegularYoloXLoss",
    "StaticYoloXLoss",
    "pad_targets",
    "unpad_targets",
    "__version__",
]
