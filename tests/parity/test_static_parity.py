"""StaticYoloXLoss against the eager reference of its mode on seeded scenarios of every kind.

Assignments must be equal cell for cell, or differ only where the reference's own answer is tie-ambiguous (the
float64 tie analysis in ``yolox_export.ties``); nothing is skipped. Loss components (relative 1e-5) and gradients
(1e-4 of the largest gradient) are compared on every batch whose assignments agree.
"""

import pytest
import torch

from yolox_export import LossConfig, StaticYoloXLoss
from yolox_export.parity import compare
from yolox_export.scenarios import KINDS, make_scenario

SEEDS = (0, 1, 2)


def assert_parity(report, min_loss_batches):
    assert report, str(report)
    for output in ("fg_mask", "matched_gt"):
        assert report.row("static", output).real == 0, str(report)
    # losses and gradients really were compared on unique-result batches
    assert report.row("static", "loss").count >= min_loss_batches, str(report)
    assert report.row("static", "gradients").count > 0, str(report)


@pytest.mark.full
@pytest.mark.parametrize("mode", ("regular", "fast"))
def test_every_kind_at_640(mode, full):
    # every kind x 2 seeds by default, x 3 under --full
    seeds = SEEDS if full else SEEDS[:2]
    batches = [make_scenario(kind, batch_size=2, seed=seed) for kind in KINDS for seed in seeds]
    report = compare(batches, LossConfig((8, 16, 32), 80, mode=mode))
    assert_parity(report, min_loss_batches=len(batches) // 2)


@pytest.mark.parametrize("mode", ("regular", "fast"))
@pytest.mark.parametrize("size", ((320, 320), (1280, 1280), (384, 640)))
def test_other_image_sizes(mode, size):
    batches = [make_scenario(kind, batch_size=2, image_size=size, num_classes=20, seed=seed)
               for kind in ("fitted", "coco", "border", "oversized") for seed in (0, 1)]
    report = compare(batches, LossConfig((8, 16, 32), 20, mode=mode))
    assert_parity(report, min_loss_batches=4)


@pytest.mark.parametrize("options", ({"use_l1": True}, {"iou_type": "giou"}, {"center_sampling_radius": 1.5},
                                     {"dynamic_ks_bias": 1.3, "obj_loss_fix": True}))
@pytest.mark.parametrize("mode", ("regular", "fast"))
def test_loss_options(mode, options):
    batches = [make_scenario(kind, batch_size=2, image_size=(320, 320), num_classes=20, seed=seed)
               for kind in ("fitted", "random", "sparse") for seed in (0, 1)]
    report = compare(batches, LossConfig((8, 16, 32), 20, mode=mode, **options))
    assert_parity(report, min_loss_batches=3)


@pytest.mark.parametrize("mode", ("regular", "fast"))
def test_fresh_head_ties_are_all_explained(mode):
    # constant logits, zero regression: many exactly equal costs, where torch.topk's order is unspecified
    report = compare([make_scenario("fresh", seed=s) for s in SEEDS], LossConfig((8, 16, 32), 80, mode=mode))
    assert report, str(report)
    assert report.row("static", "matched_gt").real == 0


@pytest.mark.full
@pytest.mark.parametrize("mode", ("regular", "fast"))
def test_one_thousand_targets_per_image_at_640(mode, full):
    # G=1000, 640x640 on the CPU: completes, and parity holds. B=2, C=80 under --full; B=1, C=20 by default, since
    # the regular reference's dense class cost ([G, A, C] BCE: 1000 x 8400 x 80 per image) is ~95% of the time,
    # ~15 s an image at C=80 on a CPU.
    batch, classes = (2, 80) if full else (1, 20)
    gen = torch.Generator().manual_seed(7)
    n = 1000
    rows = []
    for image in range(batch):
        wh = 6 + 40 * torch.rand((n, 2), generator=gen)
        xy = 640 * torch.rand((n, 2), generator=gen)
        cls = torch.randint(0, classes, (n, 1), generator=gen).float()
        rows.append(torch.cat((torch.full((n, 1), float(image)), cls, xy, wh), 1))
    base = make_scenario("random", batch_size=batch, num_classes=classes, seed=7)
    report = compare([(base.predictions, torch.cat(rows))], LossConfig((8, 16, 32), classes, mode=mode),
                     gradients=False)
    assert report, str(report)
    assert report.row("static", "matched_gt").real == 0


def test_a_planted_radius_bug_is_a_real_mismatch():
    config = LossConfig((8, 16, 32), 20, mode="regular")
    planted = StaticYoloXLoss((8, 16, 32), 20, mode="regular", center_sampling_radius=3.5)
    batches = [make_scenario("fitted", batch_size=2, image_size=(320, 320), num_classes=20, seed=s) for s in (0, 1)]
    report = compare(batches, config, static_module=planted)
    assert not report
    assert report.row("static", "fg_mask").real > 0
