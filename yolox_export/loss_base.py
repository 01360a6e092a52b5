"""What every YOLOX loss module shares, reference or static: construction from a ``LossConfig``, the component
names, and ``forward`` as the (loss, components) part of ``loss_and_assignment``."""

from __future__ import annotations

import dataclasses
import inspect

from torch import Tensor, nn

from .assignment import Assignment
from .config import COMPONENT_NAMES, LossConfig, check_flag
from .validation import MisreadingWarnings


class YoloXLossModule(nn.Module):
    """Base of every loss module. Subclasses set ``modes`` (the ``LossConfig.mode`` values they implement), take
    ``LossConfig``'s fields as constructor keywords in the config's field order, and implement
    ``loss_and_assignment(model_output, targets) -> (loss, components, Assignment)``."""

    modes: tuple[str, ...] = ()

    def __init__(self, validate: bool = True):
        super().__init__()
        self.validate = check_flag("validate", validate)
        self._misreadings = MisreadingWarnings()  # each misreading warned about once per module instance

    @classmethod
    def from_config(cls, config: LossConfig, **options):
        """The module for ``config``; ``options`` are the constructor's own keywords (``validate``, ``max_gt``)."""
        if not isinstance(config, LossConfig):
            raise TypeError(f"config must be a LossConfig, got {type(config).__name__}")
        if config.mode not in cls.modes:
            raise ValueError(f"{cls.__name__} implements mode(s) {list(cls.modes)}, not {config.mode!r}")
        accepted = inspect.signature(cls.__init__).parameters
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in accepted}
        return cls(**fields, **options)

    @property
    def use_l1(self) -> bool:
        """The L1 term's switch, a property of the config read at every call. It may be switched at any time:
        super-gradients' ``YoloXTrainingStageSwitchCallback`` sets ``criterion.use_l1 = True`` for the last epochs;
        setting it replaces the config by one with the new value (a bool, else TypeError)."""
        return self.config.use_l1

    @use_l1.setter
    def use_l1(self, value: bool) -> None:
        self.config = dataclasses.replace(self.config, use_l1=check_flag("use_l1", value))

    @property
    def component_names(self) -> list[str]:
        return list(COMPONENT_NAMES)

    def forward(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor]:
        loss, components, _ = self.loss_and_assignment(model_output, targets)
        return loss, components

    def loss_and_assignment(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor, Assignment]:
        raise NotImplementedError
