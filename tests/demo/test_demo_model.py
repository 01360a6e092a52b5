"""The demo detector: per-level output shapes and layout the losses take, seeded initial weights, prior biases."""

import math

import pytest
import torch

from yolox_export import StaticYoloXLoss
from yolox_export.demo.model import PRIOR_PROB, STRIDES, TinyYoloX, build_model


@pytest.mark.parametrize("size, classes", [(128, 3), (64, 1), (96, 4)])
def test_output_shapes_per_level(size, classes):
    outputs = build_model(classes, seed=0)(torch.rand(2, 3, size, size))
    assert [tuple(o.shape) for o in outputs] == [(2, 1, size // s, size // s, 5 + classes) for s in STRIDES]


def test_initial_objectness_and_class_outputs_start_at_the_prior():
    model = build_model(3, seed=0)
    prior = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
    for head in model.heads:
        assert torch.allclose(head.obj_pred.bias, torch.full((1,), prior))
        assert torch.allclose(head.cls_pred.bias, torch.full((3,), prior))


def test_channel_layout_is_box_objectness_classes():
    model = build_model(2, seed=0)
    head = model.heads[0]
    with torch.no_grad():  # zero every prediction conv, then give each its own bias
        for conv, value in ((head.reg_pred, 1.0), (head.obj_pred, 2.0), (head.cls_pred, 3.0)):
            conv.weight.zero_()
            conv.bias.fill_(value)
    out = model(torch.rand(1, 3, 64, 64))[0]
    assert torch.equal(out[..., :4], torch.ones_like(out[..., :4]))
    assert torch.equal(out[..., 4], torch.full_like(out[..., 4], 2.0))
    assert torch.equal(out[..., 5:], torch.full_like(out[..., 5:], 3.0))


def test_outputs_feed_the_loss_and_gradients_reach_the_backbone():
    model = build_model(3, seed=0)
    targets = torch.tensor([[0, 1, 30.0, 40.0, 20.0, 16.0]])
    loss, _ = StaticYoloXLoss(STRIDES, 3)(model(torch.rand(1, 3, 64, 64)), targets)
    loss.backward()
    assert model.backbone.stem[0][0].weight.grad.abs().sum() > 0


def test_seeded_weights_and_global_rng_untouched():
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    a, b, c = build_model(3, seed=4), build_model(3, seed=4), build_model(3, seed=5)
    assert torch.equal(torch.rand(2), expected)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model(3, seed=0)(torch.rand(1, 3, 50, 64))
    with pytest.raises(ValueError, match="num_classes"):
        TinyYoloX(0)
