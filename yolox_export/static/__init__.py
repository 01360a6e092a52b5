"""The static-shape assignment and loss."""

from .assign import assign
from .loss import PaddedYoloXLoss, StaticOutput, StaticYoloXLoss, padded_assign, padded_loss

__all__ = ["PaddedYoloXLoss", "StaticOutput", "StaticYoloXLoss", "assign", "padded_assign", "padded_loss"]
