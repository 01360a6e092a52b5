"""Every loss is built from one LossConfig (``from_config``), takes LossConfig's fields as keywords in the config's
own order, and shares ``forward`` = the (loss, components) of ``loss_and_assignment``."""

import dataclasses
import inspect

import pytest
import torch

from yolox_export import FastYoloXLoss, LossConfig, MegviiYoloXLoss, RegularYoloXLoss, StaticYoloXLoss
from yolox_export.config import MODE_RULES, MODES
from yolox_export.scenarios import make_scenario
from yolox_export.reference import REFERENCES, reference_for

LOSSES = (RegularYoloXLoss, FastYoloXLoss, MegviiYoloXLoss, StaticYoloXLoss)
FIELDS = [f.name for f in dataclasses.fields(LossConfig)]


@pytest.mark.parametrize("cls", LOSSES)
def test_constructor_keywords_follow_the_config_field_order(cls):
    params = [p for p in inspect.signature(cls.__init__).parameters if p in FIELDS]
    assert params == [f for f in FIELDS if f in params]
    assert params[:2] == ["strides", "num_classes"]


@pytest.mark.parametrize("mode", MODES)
def test_from_config_keeps_every_field(mode):
    iou_type = MODE_RULES[mode].iou_types[-1]  # "giou" where the mode has it
    config = LossConfig((8, 16), 3, mode=mode, use_l1=True, center_sampling_radius=3.0, iou_type=iou_type,
                        dynamic_ks_bias=1.3, sync_num_fgs=mode == "fast", obj_loss_fix=mode == "fast")
    static = StaticYoloXLoss.from_config(config, max_gt=4)
    assert static.config == config and static.max_gt == 4
    reference = reference_for(config, validate=False)
    assert type(reference) is REFERENCES[mode] and not reference.validate
    # a reference keeps the fields its mode reads; the ones it ignores are at their defaults
    assert reference.config.mode == mode and reference.config.use_l1 and reference.config.iou_type == iou_type


def test_from_config_rejects_another_mode_and_non_configs():
    with pytest.raises(ValueError, match="RegularYoloXLoss implements mode"):
        RegularYoloXLoss.from_config(LossConfig((8,), 2, mode="fast"))
    with pytest.raises(TypeError, match="config must be a LossConfig"):
        StaticYoloXLoss.from_config({"strides": (8,)})


@pytest.mark.parametrize("cls", LOSSES)
def test_forward_is_loss_and_assignment_without_the_assignment(cls):
    s = make_scenario("fitted", batch_size=2, image_size=(64, 64), num_classes=3, strides=(8, 16), seed=1)
    mode = cls.modes[0]
    module = cls.from_config(LossConfig((8, 16), 3, mode=mode))
    loss, components = module(s.predictions, s.targets)
    again, again_components, assignment = module.loss_and_assignment(s.predictions, s.targets)
    torch.testing.assert_close(loss, again, rtol=0, atol=0)
    torch.testing.assert_close(components, again_components, rtol=0, atol=0)
    assert assignment.fg_mask.shape == (2, 8 * 8 + 4 * 4)
    assert module.component_names == ["iou", "obj", "cls", "l1", "num_fg", "Loss"]


@pytest.mark.parametrize("cls", [RegularYoloXLoss, FastYoloXLoss, StaticYoloXLoss])
def test_use_l1_switched_after_construction_takes_effect(cls):
    """super-gradients' YoloXTrainingStageSwitchCallback sets ``criterion.use_l1 = True`` late in training: the
    module must then compute the L1 term exactly as one built with ``use_l1=True``."""
    s = make_scenario("fitted", batch_size=2, image_size=(64, 64), num_classes=3, seed=0)
    switched = cls(s.strides, 3)
    assert switched(s.predictions, s.targets)[1][3] == 0  # no L1 term yet
    switched.use_l1 = True
    assert switched.use_l1 and switched.config.use_l1
    built = cls(s.strides, 3, use_l1=True)
    got, want = switched(s.predictions, s.targets)[1], built(s.predictions, s.targets)[1]
    assert got[3] > 0
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # one arithmetic, the same module type
    with pytest.raises(TypeError, match="use_l1 must be a bool"):
        switched.use_l1 = "yes"
