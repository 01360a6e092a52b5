"""The eager reference losses that the static module is proven against."""

from .fast import FastYoloXLoss
from .megvii import MegviiYoloXLoss
from .regular import RegularYoloXLoss

__all__ = ["FastYoloXLoss", "MegviiYoloXLoss", "RegularYoloXLoss"]
