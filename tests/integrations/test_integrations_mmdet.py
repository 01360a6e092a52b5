"""MMDetLoss / bind_to_head through mmdetection's calling convention: head outputs per level cls [B, C, H, W],
bbox [B, 4, H, W], obj [B, 1, H, W] (leaves) and per-image instances (.bboxes x1, y1, x2, y2; .labels) or mmyolo's
[N, 6] tensor. The dict must equal MMDetYoloXLoss on the same leaves (values within rtol 1e-5, gradients within 1e-4
of the largest reference gradient, per list); heads are stand-ins with mmdetection's attribute names (mmdetection is
never imported); bad inputs must raise naming the image.

Seeds: at C = 3 the crowded kind has cells whose costs tie exactly (cells outside a target's box and centre region
carry 1e5, where float32 keeps few digits) at a target's k-th place; mmdetection's top-k leaves the order among ties
unspecified, the static module takes the lowest index and the reference's top-k may not, so the comparisons use a
seed without such a tie (seed 0 for every kind).
"""

import math
from types import SimpleNamespace

import pytest
import torch

from yolox_export import MMDetYoloXLoss
from yolox_export.integrations.mmdet import LossWeights, MMDetLoss, bind_to_head, head_settings, square_strides
from yolox_export.scenarios import make_scenario

KEYS = ("loss_cls", "loss_bbox", "loss_obj")


def head_outputs(scenario):
    """(cls, bbox, obj) lists of leaves in mmdetection's layout, from the scenario's [B, 1, H, W, 5 + C] levels."""
    maps = [p[:, 0].permute(0, 3, 1, 2) for p in scenario.predictions]  # [B, 5 + C, H, W]
    cls = [m[:, 5:].clone().requires_grad_(True) for m in maps]
    bbox = [m[:, :4].clone().requires_grad_(True) for m in maps]
    obj = [m[:, 4:5].clone().requires_grad_(True) for m in maps]
    return cls, bbox, obj


def instances(targets, batch):
    """mmdetection's per-image ground truths (.bboxes [n, 4], .labels [n] int64) from [N, 6] rows."""
    return [SimpleNamespace(bboxes=targets[targets[:, 0] == b, 2:], labels=targets[targets[:, 0] == b, 1].long())
            for b in range(batch)]


def reference(scenario, cls, bbox, obj, use_l1, **options):
    """MMDetYoloXLoss on the same leaves: (mmdetection's dict from its components, assignment, gradients)."""
    levels = [torch.cat((b, o, c), 1).permute(0, 2, 3, 1).unsqueeze(1) for c, b, o in zip(cls, bbox, obj)]
    loss, components, assignment = MMDetYoloXLoss(scenario.strides, scenario.num_classes, use_l1=use_l1,
                                                  **options).loss_and_assignment(levels, scenario.targets)
    wanted = {"loss_cls": components[2], "loss_bbox": 5.0 * components[0], "loss_obj": components[1]}
    if use_l1:
        wanted["loss_l1"] = components[3]
    return wanted, assignment, torch.autograd.grad(loss, [*cls, *bbox, *obj])


def assert_same_gradients(got, want, levels):
    """Per list (cls, bbox, obj): every element within 1e-4 of the list's largest reference gradient."""
    for start in range(0, 3 * levels, levels):
        scale = max(float(w.abs().max()) for w in want[start:start + levels])
        for g, w in zip(got[start:start + levels], want[start:start + levels]):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-4 * max(scale, 1e-12))


#: (kind, C, use_l1); crowded (100 to 200 targets per image) once, as it costs seconds.
CASES = [("coco", 3, False), ("coco", 20, True), ("crowded", 20, True), ("empty", 3, False), ("empty", 20, True),
         ("fresh", 3, True), ("fresh", 20, False)]


@pytest.mark.parametrize("kind, num_classes, use_l1", CASES)
def test_loss_by_feat_equals_the_reference(kind, num_classes, use_l1):
    s = make_scenario(kind, batch_size=2, image_size=(128, 128), num_classes=num_classes, seed=0, box_format="xyxy")
    cls, bbox, obj = head_outputs(s)
    loss = MMDetLoss(num_classes, s.strides, use_l1=use_l1)
    got = loss.loss_by_feat(cls, bbox, obj, instances(s.targets, 2), [{}, {}])
    grads = torch.autograd.grad(sum(got.values()), [*cls, *bbox, *obj])
    wanted, assignment, want_grads = reference(s, cls, bbox, obj, use_l1)
    assert list(got) == list(wanted)
    for key in wanted:
        torch.testing.assert_close(got[key], wanted[key], rtol=1e-5, atol=1e-6)
    assert_same_gradients(grads, want_grads, len(s.strides))

    ours = loss.assign(cls, bbox, obj, instances(s.targets, 2))
    assert torch.equal(ours.fg_mask, assignment.fg_mask)
    assert torch.equal(ours.matched_gt, assignment.matched_gt)
    torch.testing.assert_close(ours.matched_iou, assignment.matched_iou, rtol=1e-6, atol=1e-7)


def test_a_fixed_max_gt_and_the_tensor_form_give_the_same_dict():
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=4, seed=0, box_format="xyxy")
    cls, bbox, obj = head_outputs(s)
    by_instances = MMDetLoss(4, s.strides, use_l1=True).loss_by_feat(cls, bbox, obj, instances(s.targets, 2), [{}] * 2)
    # mmyolo's form: one [N, 6] tensor, float labels, the two images' rows interleaved (order within an image kept)
    image = s.targets[:, 0].long()
    slot = torch.stack([(image[:i] == image[i]).sum() for i in range(image.shape[0])])  # place within its image
    rows = s.targets[torch.argsort(2 * slot + image)]
    assert not torch.equal(rows, s.targets)
    by_rows = MMDetLoss(4, s.strides, use_l1=True).loss_by_feat(cls, bbox, obj, rows, [{}] * 2, [None, None])
    fixed = MMDetLoss(4, s.strides, use_l1=True, max_gt=32).loss_by_feat(cls, bbox, obj, rows, [{}] * 2)
    for key in (*KEYS, "loss_l1"):
        assert torch.equal(by_rows[key], by_instances[key])
        torch.testing.assert_close(fixed[key], by_instances[key], rtol=1e-5, atol=1e-6)


def test_hand_worked_single_target():
    # one level, stride 8, a 16x16 image: a 2x2 grid, cells (col, row) = 0: (0, 0), 1: (1, 0), 2: (0, 1), 3: (1, 1),
    # centres (4, 4), (12, 4), (4, 12), (12, 12). B = 2, C = 2; image 0 has one target (0, 0, 8, 8) of class 0, image
    # 1 none. Every output is 0 except, at image 0's cell 0: dx = 0.5, objectness ln 3, class 0 logit ln 3.
    # Decoded boxes (centre d * 8 + col * 8, size exp(0) * 8 = 8): cell 0 (0, -4, 8, 4), IoU with the target
    # 32 / (64 + 64 - 32) = 1/3; cells 1, 2, 3 (4, -4, 12, 4), (-4, 4, 4, 12), (4, 4, 12, 12): IoU 16 / 112 = 1/7.
    # Candidates: cell 0 strictly inside the box, all four within 2.5 * 8 = 20 of its centre (4, 4): the union is all
    # four, the strong test (box and centre) holds at cell 0 only (1e5 elsewhere). k = int(1/3 + 3/7) -> clamp 1:
    # cell 0 alone, matched IoU 1/3; num_total = max(1, 1) = 1.
    # loss_cls = BCE(ln 3, 1/3) + BCE(0, 0) = (ln 4 - ln 3 / 3) + ln 2 = 3 ln 2 - ln 3 / 3
    # loss_obj = BCE(ln 3, 1) + 7 cells * BCE(0, 0) = ln(4 / 3) + 7 ln 2
    # loss_bbox = 5 * (1 - (1/3) ** 2) = 40 / 9
    # loss_l1: target ((4 - 0) / 8, (4 - 0) / 8, log(8 / 8 + 1e-8), same) = (0.5, 0.5, 0, 0) in float32; the raw box
    # (0.5, 0, 0, 0): |0| + |-0.5| = 0.5
    # gradients at cell 0: d loss_cls / d class-0 logit = sigmoid(ln 3) - 1/3 = 3/4 - 1/3 = 5/12;
    # d loss_obj / d objectness = 3/4 - 1 = -1/4
    cls = torch.zeros((2, 2, 2, 2))
    bbox = torch.zeros((2, 4, 2, 2))
    obj = torch.zeros((2, 1, 2, 2))
    cls[0, 0, 0, 0] = math.log(3.0)
    obj[0, 0, 0, 0] = math.log(3.0)
    bbox[0, 0, 0, 0] = 0.5
    cls, bbox, obj = ([t.requires_grad_(True)] for t in (cls, bbox, obj))
    gts = [SimpleNamespace(bboxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]]), labels=torch.tensor([0])),
           SimpleNamespace(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.long))]
    loss = MMDetLoss(2, strides=(8,), use_l1=True)
    got = loss.loss_by_feat(cls, bbox, obj, gts, [{}, {}])
    want = {"loss_cls": 3 * math.log(2) - math.log(3) / 3, "loss_bbox": 40 / 9,
            "loss_obj": math.log(4 / 3) + 7 * math.log(2), "loss_l1": 0.5}
    assert list(got) == list(want)
    for key, value in want.items():
        torch.testing.assert_close(got[key], torch.tensor(value), rtol=1e-6, atol=1e-6)
    grad_cls, = torch.autograd.grad(got["loss_cls"], cls)
    grad_obj, = torch.autograd.grad(got["loss_obj"], obj)
    torch.testing.assert_close(grad_cls[0, :, 0, 0], torch.tensor([5 / 12, 0.5]))  # class 1: sigmoid(0) - 0
    torch.testing.assert_close(grad_obj[0, 0, 0, 0], torch.tensor(-0.25))
    a = loss.assign(cls, bbox, obj, gts)
    assert a.fg_mask.tolist() == [[True, False, False, False], [False] * 4]
    assert a.matched_gt.tolist() == [[0, -1, -1, -1], [-1] * 4]
    torch.testing.assert_close(a.matched_iou[0, 0], torch.tensor(1 / 3))


@pytest.mark.parametrize("max_gt", (None, 4))
def test_no_positive_keeps_every_level_in_the_graph_with_a_zero_gradient(max_gt):
    s = make_scenario("fresh", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
    cls, bbox, obj = head_outputs(s)
    # image 0: a target far outside the image (no candidate cell); image 1: no target
    gts = [SimpleNamespace(bboxes=torch.tensor([[900.0, 900.0, 910.0, 910.0]]), labels=torch.tensor([1])),
           SimpleNamespace(bboxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.long))]
    got = MMDetLoss(3, s.strides, use_l1=True, max_gt=max_gt).loss_by_feat(cls, bbox, obj, gts, [{}, {}])
    assert all(float(got[key].detach()) == 0.0 for key in ("loss_cls", "loss_bbox", "loss_l1"))
    for key, inputs in (("loss_cls", cls), ("loss_bbox", bbox), ("loss_l1", bbox)):
        for g in torch.autograd.grad(got[key], inputs, retain_graph=True):  # raises if a level is not in the graph
            assert torch.equal(g, torch.zeros_like(g))
    sum(got.values()).backward()
    for leaf in (*cls, *bbox):
        assert leaf.grad is not None and torch.equal(leaf.grad, torch.zeros_like(leaf.grad))
    assert all(leaf.grad is not None and float(leaf.grad.abs().sum()) > 0 for leaf in obj)


# ---------------------------------------------------------------------------------------------------------------
# binding to a head: stand-ins with mmdetection's class and attribute names


class CrossEntropyLoss(SimpleNamespace):
    pass


class IoULoss(SimpleNamespace):
    pass


class L1Loss(SimpleNamespace):
    pass


class SimOTAAssigner(SimpleNamespace):
    pass


class BboxOverlaps2D(SimpleNamespace):
    pass


class MlvlPointGenerator(SimpleNamespace):
    pass


class YOLOXBBoxCoder(SimpleNamespace):
    pass


def ce():
    return CrossEntropyLoss(use_sigmoid=True, use_mask=False, reduction="sum", class_weight=None, ignore_index=None,
                            loss_weight=1.0, avg_non_ignore=False)


class StandInHead:
    """mmdetection 3.3's YOLOXHead as built from the YOLOX config, minus the convolutions: ``loss`` calls
    ``self.loss_by_feat`` as ``BaseDenseHead.loss`` does; its own ``loss_by_feat`` must never run."""

    def __init__(self, num_classes, strides=(8, 16, 32)):
        self.num_classes = self.cls_out_channels = num_classes
        self.strides = strides
        self.use_l1 = False
        self.loss_cls, self.loss_obj = ce(), ce()
        self.loss_bbox = IoULoss(mode="square", linear=False, eps=1e-16, reduction="sum", loss_weight=5.0)
        self.loss_l1 = L1Loss(reduction="sum", loss_weight=1.0)
        self.prior_generator = MlvlPointGenerator(strides=[(s, s) for s in strides], offset=0)
        self.train_cfg = {"assigner": {"type": "SimOTAAssigner", "center_radius": 2.5}}
        self.assigner = SimOTAAssigner(center_radius=2.5, candidate_topk=10, iou_weight=3.0, cls_weight=1.0,
                                       iou_calculator=BboxOverlaps2D(scale=1.0, dtype=None))

    def loss(self, outs, batch_gt_instances, batch_img_metas):
        return self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas, None)

    def loss_by_feat(self, *args):
        raise AssertionError("mmdetection's own loss_by_feat must have been shadowed")


class StandInMMYOLOHead(StandInHead):
    """mmyolo's YOLOXHead: no ``strides`` (``featmap_strides`` and the prior generator's), a bbox coder, the L1 term
    as ``use_bbox_aux`` / ``loss_bbox_aux``, ground truths as one [N, 6] tensor."""

    def __init__(self, num_classes):
        super().__init__(num_classes)
        del self.strides, self.use_l1, self.loss_l1, self.cls_out_channels
        self.featmap_strides = [8, 16, 32]
        self.bbox_coder = YOLOXBBoxCoder()
        self.use_bbox_aux = False
        self.loss_bbox_aux = L1Loss(reduction="sum", loss_weight=1.0)
        self.train_cfg = {"assigner": {"type": "mmdet.SimOTAAssigner", "center_radius": 2.5,
                                       "iou_calculator": {"type": "mmdet.BboxOverlaps2D"}}}


def test_bound_head_equals_the_reference_and_follows_use_l1_switched_after_binding():
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
    head = bind_to_head(StandInHead(3))
    for use_l1 in (False, True):
        head.use_l1 = use_l1  # YOLOXModeSwitchHook, after the model is built
        cls, bbox, obj = head_outputs(s)
        got = head.loss((cls, bbox, obj), instances(s.targets, 2), [{}, {}])
        wanted, _, want_grads = reference(s, cls, bbox, obj, use_l1)
        assert list(got) == list(wanted)
        for key in wanted:
            torch.testing.assert_close(got[key], wanted[key], rtol=1e-5, atol=1e-6)
        assert_same_gradients(torch.autograd.grad(sum(got.values()), [*cls, *bbox, *obj]), want_grads, 3)
    del head.loss_by_feat  # the head's own method again
    with pytest.raises(AssertionError, match="shadowed"):
        head.loss((cls, bbox, obj), instances(s.targets, 2), [{}, {}])


def test_bound_mmyolo_head_takes_the_tensor_form_and_names_the_l1_term_loss_bbox_aux():
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
    head = bind_to_head(StandInMMYOLOHead(3))
    head.use_bbox_aux = True
    cls, bbox, obj = head_outputs(s)
    got = head.loss((cls, bbox, obj), s.targets, [{}, {}])
    wanted, _, _ = reference(s, cls, bbox, obj, use_l1=True)
    assert list(got) == [*KEYS, "loss_bbox_aux"]
    torch.testing.assert_close(got["loss_bbox_aux"], wanted["loss_l1"], rtol=1e-5, atol=1e-6)
    for key in KEYS:
        torch.testing.assert_close(got[key], wanted[key], rtol=1e-5, atol=1e-6)


def test_head_settings_other_than_the_defaults_are_honoured():
    head = StandInHead(3)
    del head.assigner  # the assigner from the config dict
    head.train_cfg = {"assigner": {"type": "SimOTAAssigner", "center_radius": 1.5}}
    head.loss_cls.loss_weight, head.loss_bbox.loss_weight, head.loss_l1.loss_weight = 2.0, 3.0, 0.5
    settings = head_settings(head)
    assert settings["center_radius"] == 1.5
    assert settings["loss_weights"] == LossWeights(cls=2.0, bbox=3.0, obj=1.0, l1=0.5)
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
    bind_to_head(head).use_l1 = True
    cls, bbox, obj = head_outputs(s)
    got = head.loss((cls, bbox, obj), instances(s.targets, 2), [{}, {}])
    wanted, _, _ = reference(s, cls, bbox, obj, use_l1=True, center_sampling_radius=1.5)
    for key, weight in (("loss_cls", 2.0), ("loss_bbox", 3.0 / 5.0), ("loss_obj", 1.0), ("loss_l1", 0.5)):
        torch.testing.assert_close(got[key], weight * wanted[key], rtol=1e-5, atol=1e-6)


def _set(path, value):
    def change(head):
        *owners, name = path.split(".")
        target = head
        for owner in owners:
            target = getattr(target, owner)
        setattr(target, name, value)
    return change


REFUSED = [
    (_set("loss_cls.reduction", "mean"), r"head.loss_cls.reduction is 'mean'"),
    (_set("loss_obj.use_sigmoid", False), r"head.loss_obj.use_sigmoid is False"),
    (_set("loss_cls.class_weight", [1.0, 2.0, 1.0]), r"head.loss_cls.class_weight"),
    (_set("loss_obj.ignore_index", 0), r"head.loss_obj.ignore_index is 0"),
    (_set("loss_bbox.mode", "log"), r"head.loss_bbox.mode is 'log'"),
    (_set("loss_bbox.eps", 1e-6), r"head.loss_bbox.eps is 1e-06"),
    (_set("loss_bbox", SimpleNamespace(loss_weight=5.0)), r"head.loss_bbox is a SimpleNamespace"),
    (_set("loss_l1.reduction", "mean"), r"head.loss_l1.reduction"),
    (_set("assigner.candidate_topk", 13), r"head.assigner.candidate_topk is 13"),
    (_set("assigner.iou_weight", 2.0), r"head.assigner.iou_weight is 2.0"),
    (_set("assigner.cls_weight", 0.5), r"head.assigner.cls_weight is 0.5"),
    (_set("assigner.iou_calculator.dtype", "fp16"), r"head.assigner.iou_calculator.dtype is 'fp16'"),
    (_set("assigner", {"type": "ATSSAssigner"}), r"head.assigner is a ATSSAssigner"),
    (_set("prior_generator.offset", 0.5), r"head.prior_generator.offset is 0.5"),
    (_set("prior_generator.strides", [(8, 8), (16, 32), (32, 32)]), r"prior_generator.strides\[1\] is \(16, 32\)"),
    (_set("strides", (8, 16, 64)), r"strides disagree"),
    (_set("cls_out_channels", 4), r"cls_out_channels is 4"),
]


@pytest.mark.parametrize("change, message", REFUSED)
def test_head_settings_the_drop_in_does_not_implement_are_refused(change, message):
    head = StandInHead(3)
    change(head)
    with pytest.raises(ValueError, match=message):
        bind_to_head(head)


def test_strides_come_from_the_prior_generator_when_the_head_has_none():
    head = StandInHead(3, strides=(8, 16))
    del head.strides
    assert head_settings(head)["strides"] == (8, 16)
    with pytest.raises(TypeError, match="come from the head"):
        bind_to_head(head, num_classes=3)
    del head.use_l1
    with pytest.raises(ValueError, match="use_l1 .* or use_bbox_aux"):
        bind_to_head(head)


# ---------------------------------------------------------------------------------------------------------------
# bad inputs


def bad_input_case():
    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
    return MMDetLoss(3, s.strides), [list(t) for t in head_outputs(s)]


def with_box(box, label=1):
    good = SimpleNamespace(bboxes=torch.tensor([[4.0, 4.0, 20.0, 20.0]]), labels=torch.tensor([0]))
    return [good, SimpleNamespace(bboxes=torch.tensor([[8.0, 8.0, 30.0, 30.0], box]), labels=torch.tensor([0, label]))]


@pytest.mark.parametrize("gts, message", [
    (with_box([30.0, 8.0, 20.0, 30.0]), r"batch_gt_instances\[1\] \(image 1\), instance 1: box x1, y1, x2, y2 = 30.0, 8.0, 20.0, 30.0; a box needs"),
    (with_box([8.0, 30.0, 20.0, 10.0]), r"image 1\), instance 1: box x1, y1, x2, y2 = 8.0, 30.0, 20.0, 10.0; a box needs"),
    (with_box([8.0, float("nan"), 20.0, 30.0]), r"image 1\), instance 1: box .* is not finite"),
    (with_box([8.0, 8.0, 20.0, 30.0], label=3), r"image 1\), instance 1: label 3.0 is not a class id"),
    (with_box([8.0, 8.0, 20.0, 30.0], label=-1), r"image 1\), instance 1: label -1.0"),
    (torch.tensor([[0, 0, 4.0, 4, 20, 20], [1, 1.5, 8, 8, 30, 30]]), r"row 1 \(image 1\): label 1.5 is not"),
    (torch.tensor([[0, 0, 4.0, 4, 20, 20], [2, 1, 8, 8, 30, 30]]), r"row 1: image index 2.0; .* in \[0, 2\)"),
    (with_box([8.0, 8.0, 20.0, 30.0])[:1], r"batch_gt_instances has 1 entries for 2 images"),
])
def test_bad_ground_truths_raise_naming_the_image(gts, message):
    loss, (cls, bbox, obj) = bad_input_case()
    with pytest.raises(ValueError, match=message):
        loss.loss_by_feat(cls, bbox, obj, gts, [{}, {}])


def test_bad_head_outputs_raise_naming_the_list_and_level():
    loss, (cls, bbox, obj) = bad_input_case()
    gts = with_box([8.0, 8.0, 20.0, 30.0])
    cases = [
        ((cls[:1] + [cls[1][:, :2]] + cls[2:], bbox, obj),
         r"cls_scores\[1\] has shape \(2, 2, 4, 4\); expected \[B, num_classes = 3, H, W\]"),
        ((cls, [torch.cat((bbox[0], bbox[0][:, :1]), 1)] + bbox[1:], obj),
         r"bbox_preds\[0\] has shape \(2, 5, 8, 8\); expected \[B, 4, H, W\]"),
        ((cls, bbox, obj[:2] + [obj[2].expand(-1, 2, -1, -1)]), r"objectnesses\[2\] .*; expected \[B, 1, H, W\]"),
        ((cls, bbox[:2], obj), r"3 cls_scores, 2 bbox_preds and 3 objectnesses levels for 3 strides"),
        ((cls[:2], bbox[:2], obj[:2]), r"got 2 cls_scores, 2 bbox_preds and 2 objectnesses levels for 3 strides"),
        ((cls, bbox[:1] + [bbox[1][:1]] + bbox[2:], obj), r"bbox_preds\[1\] has 1 images; the batch has 2"),
    ]
    for (c, b, o), message in cases:
        with pytest.raises(ValueError, match=message):
            loss.loss_by_feat(c, b, o, gts, [{}, {}])
    with pytest.raises(ValueError, match=r"cls_scores\[0\] has 2 images; the batch has 3"):
        loss.loss_by_feat(cls, bbox, obj, gts + gts[:1], [{}, {}, {}])
    nan = cls[1].detach().clone()
    nan[1, 2, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"cls_scores\[1\] of image 1: non-finite value inf at channel 2, row 3"):
        loss.loss_by_feat(cls[:1] + [nan] + cls[2:], bbox, obj, gts, [{}, {}])
    with pytest.raises(ValueError, match=r"batch_gt_instances_ignore has 1 entries for 2 images"):
        loss.loss_by_feat(cls, bbox, obj, gts, [{}, {}], [None])


def test_a_label_is_named_with_the_value_passed_not_its_float32_rounding():
    loss, (cls, bbox, obj) = bad_input_case()
    big = 2**24 + 1  # float32 rounds it to 16777216
    gts = with_box([8.0, 8.0, 20.0, 30.0], label=big)
    with pytest.raises(ValueError, match=r"image 1\), instance 1: label 16777217(\.0)? is not a class id"):
        loss.loss_by_feat(cls, bbox, obj, gts, [{}, {}])


@pytest.mark.parametrize("strides", [[torch.tensor([8, 8]), torch.tensor([16, 16]), torch.tensor([32, 32])],
                                     torch.tensor([[8, 8], [16, 16], [32, 32]]), [torch.tensor(8), 16, 32]])
def test_tensor_stride_pairs_are_read(strides):
    assert square_strides(strides, "head.prior_generator.strides") == (8, 16, 32)
    with pytest.raises(ValueError, match=r"head.prior_generator.strides\[1\] is .*square strides"):
        square_strides([torch.tensor([8, 8]), torch.tensor([16, 8])], "head.prior_generator.strides")


def test_audit_from_mmdet_inputs_is_the_static_audit_row_for_row():
    # the same arithmetic as StaticYoloXLoss(mode="mmdet") on the same head outputs, so equal bit for bit (the static
    # audit against the reference's is tests/test_audit.py's, ties explained)
    from yolox_export.static import StaticYoloXLoss

    s = make_scenario("crowded", batch_size=2, image_size=(64, 64), num_classes=3, seed=2, box_format="xyxy")
    cls, bbox, obj = head_outputs(s)
    audit = MMDetLoss(3, s.strides).audit(cls, bbox, obj, instances(s.targets, 2))
    levels = [torch.cat((b, o, c), 1).permute(0, 2, 3, 1).unsqueeze(1) for c, b, o in zip(cls, bbox, obj)]
    want = StaticYoloXLoss(s.strides, 3, mode="mmdet").audit([lv.detach() for lv in levels], s.targets)
    assert len(audit) == len(want) and audit.box_format == "xyxy" and bool(audit.starved.any())
    # rows come image by image; this batch's targets are in image order, so row i is targets[i]
    assert torch.equal(audit.image, s.targets[:, 0].long())
    for name in ("k", "selected", "lost", "won", "cells", "candidates", "cheapest", "status"):
        assert torch.equal(getattr(audit, name), getattr(want, name)), name


def test_levels_that_do_not_cover_one_image_are_refused():
    loss, (cls, bbox, obj) = bad_input_case()  # 64x64 at strides 8, 16, 32: grids 8x8, 4x4, 2x2
    gts = with_box([8.0, 8.0, 20.0, 30.0])
    wrong = [level[..., :2, :2] for level in (cls[1], bbox[1], obj[1])]  # level 1 as 2x2: a 32x32 image
    with pytest.raises(ValueError, match=r"level 1 grid \(2, 2\) at stride 16 covers an image of 32x32"):
        loss.loss_by_feat([cls[0], wrong[0], cls[2]], [bbox[0], wrong[1], bbox[2]], [obj[0], wrong[2], obj[2]], gts,
                          [{}, {}])
    with pytest.raises(ValueError, match="the levels are in the wrong order"):
        loss.loss_by_feat(cls[::-1], bbox[::-1], obj[::-1], gts, [{}, {}])
