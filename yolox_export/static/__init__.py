"""The static-shape assignment and loss."""

from .loss import PaddedYoloXLoss, StaticYoloXLoss
from .padded import StaticOutput, padded_assign, padded_loss

__all__ = ["PaddedYoloXLoss", "StaticOutput", "StaticYoloXLoss", "padded_assign", "padded_loss"]
