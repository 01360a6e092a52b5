"""MegviiLoss / bind_to_head through Megvii's calling convention: a stand-in head (written here, Megvii's
training-time forward) decodes raw level outputs [B, 5 + C, h, w] itself and calls ``self.get_losses``; the bound
loss must equal MegviiYoloXLoss on the same raw outputs (loss and components within 1e-5, gradients back to the raw
outputs within 1e-4 of the largest), and bad labels must raise."""

import pytest
import torch

from yolox_export import MegviiYoloXLoss
from yolox_export.integrations.megvii import MegviiLoss, bind_to_head
from yolox_export.scenarios import KINDS, make_scenario


class StandInHead:
    """Megvii's YOLOXHead training path, minus the convolutions: decode each level as ``get_output_and_grid`` does
    ((raw_xy + grid) * s, exp(raw_wh) * s, grid from meshgrid "ij", x fastest), collect shifts / strides per level
    [1, h * w] and the raw box logits, then ``self.get_losses``."""

    def __init__(self, num_classes, strides):
        self.num_classes, self.strides, self.use_l1 = num_classes, list(strides), False

    def forward(self, levels, labels, imgs=None):
        outputs, x_shifts, y_shifts, expanded_strides, origin_preds = [], [], [], [], []
        for output, stride in zip(levels, self.strides):
            batch, channels, h, w = output.shape
            yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, -1, 2).float()
            flat = output.view(batch, channels, h * w).permute(0, 2, 1)  # [B, h*w, 5 + C]
            if self.use_l1:
                origin_preds.append(flat[..., :4].clone())
            decoded = torch.cat(((flat[..., :2] + grid) * stride, torch.exp(flat[..., 2:4]) * stride, flat[..., 4:]), -1)
            outputs.append(decoded)
            x_shifts.append(grid[..., 0])
            y_shifts.append(grid[..., 1])
            expanded_strides.append(torch.full((1, h * w), float(stride)))
        return self.get_losses(imgs, x_shifts, y_shifts, expanded_strides, labels, torch.cat(outputs, 1),
                               origin_preds, dtype=levels[0].dtype)

    def get_losses(self, *args, **kwargs):
        raise AssertionError("Megvii's own get_losses must have been replaced")


def megvii_inputs(scenario):
    """Raw level outputs in Megvii's layout [B, 5 + C, h, w] (leaves) and zero-padded labels [B, max_labels, 5]."""
    levels = [p[:, 0].permute(0, 3, 1, 2).contiguous().requires_grad_(True) for p in scenario.predictions]
    targets = scenario.targets
    counts = [int((targets[:, 0] == b).sum()) for b in range(scenario.batch_size)]
    labels = torch.zeros((scenario.batch_size, max(counts + [1]) + 2, 5))
    for b in range(scenario.batch_size):
        rows = targets[targets[:, 0] == b, 1:]
        labels[b, :rows.shape[0]] = rows
    return levels, labels


@pytest.mark.parametrize("use_l1", (False, True))
@pytest.mark.parametrize("kind", KINDS)
def test_bound_head_equals_the_reference(kind, use_l1):
    s = make_scenario(kind, batch_size=2, image_size=(128, 160), num_classes=6, seed=KINDS.index(kind))
    head = bind_to_head(StandInHead(6, s.strides))
    head.use_l1 = use_l1
    levels, labels = megvii_inputs(s)
    loss, iou5, obj, cls, l1, fg_ratio = head.forward(levels, labels)
    grads = torch.autograd.grad(loss, levels)

    ours = [lv.permute(0, 2, 3, 1).unsqueeze(1) for lv in levels]  # the same leaves in our layout
    want, comps = MegviiYoloXLoss(s.strides, 6, use_l1=use_l1)(ours, s.targets)
    want_grads = torch.autograd.grad(want, levels)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    got = torch.stack((iou5 / 5, obj, cls, torch.as_tensor(l1, dtype=torch.float32), torch.tensor(fg_ratio)))
    torch.testing.assert_close(got, comps[:5], rtol=1e-5, atol=1e-6)
    assert isinstance(fg_ratio, float) and (isinstance(l1, float) and l1 == 0.0) != use_l1
    for g, w in zip(grads, want_grads):
        scale = float(w.abs().max())
        torch.testing.assert_close(g, w, rtol=0, atol=1e-4 * max(scale, 1e-12))


def test_gradient_reaches_the_raw_box_logits_through_the_users_decode():
    s = make_scenario("fitted", batch_size=1, image_size=(64, 64), num_classes=3, seed=2)
    head = bind_to_head(StandInHead(3, s.strides))
    levels, labels = megvii_inputs(s)
    loss = head.forward(levels, labels)[0]
    loss.backward()
    assert all(float(lv.grad[:, :4].abs().sum()) > 0 for lv in levels[:1])


def bad_labels_case():
    s = make_scenario("coco", batch_size=1, image_size=(64, 64), num_classes=3, seed=4)
    head = bind_to_head(StandInHead(3, s.strides))
    levels = [p[:, 0].permute(0, 3, 1, 2).contiguous() for p in s.predictions]
    return head, levels


def test_a_real_row_after_padding_is_an_error():
    head, levels = bad_labels_case()
    labels = torch.zeros((1, 4, 5))
    labels[0, 0] = torch.tensor([1.0, 20.0, 20.0, 8.0, 8.0])
    labels[0, 2] = torch.tensor([2.0, 40.0, 30.0, 8.0, 8.0])  # row 1 is all zero: not padding, as row 2 follows
    with pytest.raises(ValueError, match="image 0: row 2 is a real target after the all-zero row 1"):
        head.forward(levels, labels)


def test_a_bad_real_row_names_what_is_wrong():
    head, levels = bad_labels_case()
    labels = torch.zeros((1, 2, 5))
    labels[0, 0] = torch.tensor([7.0, 20.0, 20.0, 8.0, 8.0])  # class 7 with 3 classes
    with pytest.raises(ValueError, match="class id 7.0"):
        head.forward(levels, labels)
    labels[0, 0] = torch.tensor([0.0, -30.0, 2.0, 8.0, 0.0])  # sums to <= 0 (Megvii would drop it), h = 0
    with pytest.raises(ValueError, match="w, h = 8.0, 0.0"):
        head.forward(levels, labels)


def test_binding_checks_the_head():
    with pytest.raises(ValueError, match="num_classes"):
        bind_to_head(StandInHead(3, (8, 16, 32)), MegviiLoss(4, (8, 16, 32)))
    with pytest.raises(ValueError, match="strides"):
        bind_to_head(StandInHead(3, (8, 16, 32)), MegviiLoss(3, (8, 16)))


def test_shifts_that_are_not_our_grid_are_an_error():
    s = make_scenario("coco", batch_size=1, image_size=(64, 64), num_classes=3, seed=4)
    loss = MegviiLoss(3, s.strides)
    outputs = torch.zeros((1, 84, 8))
    x = [torch.arange(64.0).remainder(8).view(1, -1), torch.arange(16.0).remainder(4).view(1, -1),
         torch.arange(4.0).remainder(2).view(1, -1)]
    y = [torch.arange(64.0).div(8, rounding_mode="floor").view(1, -1), torch.arange(16.0).div(4, rounding_mode="floor").view(1, -1),
         torch.zeros(1, 4)]  # level 2's rows are wrong
    st = [torch.full((1, n), float(v)) for n, v in ((64, 8), (16, 16), (4, 32))]
    with pytest.raises(ValueError, match="y_shifts differ"):
        loss.get_losses(None, x, y, st, torch.zeros((1, 1, 5)), outputs, [], torch.float32)


def test_a_bad_label_is_named_by_its_image_and_row_in_the_users_labels():
    head, levels = bad_labels_case()
    labels = torch.zeros((2, 4, 5))
    labels[0, 0] = torch.tensor([1.0, 20.0, 20.0, 8.0, 8.0])
    labels[1, :3] = torch.tensor([1.0, 20.0, 20.0, 8.0, 8.0])
    labels[1, 2, 0] = 7.0  # class 7 with 3 classes, at labels[1, 2]: the batch's third real row
    with pytest.raises(ValueError, match=r"labels\[1, 2\] \(image 1, row 2\) has class id 7.0"):
        head.forward([torch.cat((level, level)) for level in levels], labels)


def test_audit_from_megvii_inputs_is_the_static_audit_row_for_row():
    # the same head outputs in our layout: Megvii's decoded boxes equal ours (the same decode), so its audit of
    # labels[b, g] is StaticYoloXLoss(mode="megvii")'s audit of that target, the padding rows "masked"
    from yolox_export.audit import STATUSES
    from yolox_export.static import StaticYoloXLoss

    s = make_scenario("crowded", batch_size=2, image_size=(64, 64), num_classes=3, seed=0)
    loss = MegviiLoss(3, s.strides)
    head = bind_to_head(StandInHead(3, s.strides), loss)
    levels, labels = megvii_inputs(s)
    captured = {}
    head.get_losses = lambda *args, **kwargs: captured.update(args=args)  # the head's own call, captured
    head.forward([lv.detach() for lv in levels], labels)
    audit = loss.audit(*captured["args"])
    want = StaticYoloXLoss(s.strides, 3, mode="megvii").audit(s.predictions, s.targets)
    real = audit.status != STATUSES.index("masked")
    assert int(real.sum()) == len(want) and bool(audit.starved.any())
    for name in ("k", "selected", "lost", "won", "cells", "candidates", "status"):
        assert torch.equal(getattr(audit, name)[real], getattr(want, name)), name
    torch.testing.assert_close(audit.cheapest[real], want.cheapest, rtol=1e-6, atol=0)
