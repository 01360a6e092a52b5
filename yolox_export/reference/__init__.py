"""The two eager reference losses that the static module is proven against."""

from .fast import FastYoloXLoss
from .regular import RegularYoloXLoss

__all__ = ["FastYoloXLoss", "RegularYoloXLoss"]
