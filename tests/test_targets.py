"""pad_targets / unpad_targets: the ragged [N, 6] target list <-> padded gt [B, G, 5] + gt_mask [B, G].

Rows are (image_index, class, cx, cy, w, h). Padded slot g of image b is that image's g-th target in order of
appearance; padding rows are zero with mask False. The padding is pure data movement, so every check is exact.
"""

import pytest
import torch

from yolox_export import pad_targets, unpad_targets

# image indices interleaved on purpose: image 2 first, image 0 twice, image 1 once, image 2 again, image 0 again
TARGETS = torch.tensor(
    [
        [2, 0, 10, 11, 4, 5],  # row 0: image 2, slot 0
        [0, 1, 20, 21, 6, 7],  # row 1: image 0, slot 0
        [0, 2, 30, 31, 8, 9],  # row 2: image 0, slot 1
        [1, 0, 40, 41, 2, 3],  # row 3: image 1, slot 0
        [2, 1, 50, 51, 4, 4],  # row 4: image 2, slot 1
        [0, 0, 60, 61, 5, 5],  # row 5: image 0, slot 2
    ],
    dtype=torch.float32,
)


def stable_sort_by_image(targets):
    order = torch.sort(targets[:, 0], stable=True).indices
    return targets[order]


def test_padded_layout_keeps_order_of_appearance_per_image():
    gt, mask = pad_targets(TARGETS, 4)
    # counts per image: 3, 1, 2, 0 -> G = 3 (the largest count) when max_gt is None
    assert gt.shape == (4, 3, 5) and mask.shape == (4, 3) and mask.dtype == torch.bool
    assert mask.tolist() == [[True, True, True], [True, False, False], [True, True, False], [False, False, False]]
    # image 0: rows 1, 2, 5 in that order; image 1: row 3; image 2: rows 0, 4; image 3: nothing
    expected = torch.zeros(4, 3, 5)
    expected[0, 0], expected[0, 1], expected[0, 2] = TARGETS[1, 1:], TARGETS[2, 1:], TARGETS[5, 1:]
    expected[1, 0] = TARGETS[3, 1:]
    expected[2, 0], expected[2, 1] = TARGETS[0, 1:], TARGETS[4, 1:]
    assert torch.equal(gt, expected)


def test_round_trip_is_the_stable_sort_by_image():
    gt, mask = pad_targets(TARGETS, 4)
    back = unpad_targets(gt, mask)
    # rows 1, 2, 5 (image 0), 3 (image 1), 0, 4 (image 2)
    assert torch.equal(back, TARGETS[[1, 2, 5, 3, 0, 4]])
    assert torch.equal(back, stable_sort_by_image(TARGETS))


def test_round_trip_float64():
    t = TARGETS.double()
    t[:, 2:] += 0.123456789012345  # digits float32 would lose
    gt, mask = pad_targets(t, 3)
    assert gt.dtype == torch.float64
    assert torch.equal(unpad_targets(gt, mask), stable_sort_by_image(t))


def test_extra_padding_gives_the_same_rows():
    gt, mask = pad_targets(TARGETS, 4)
    gt7, mask7 = pad_targets(TARGETS, 4, max_gt=7)
    assert gt7.shape == (4, 7, 5) and mask7.shape == (4, 7)
    assert torch.equal(gt7[:, :3], gt) and torch.equal(mask7[:, :3], mask)
    assert not mask7[:, 3:].any() and (gt7[:, 3:] == 0).all()
    assert torch.equal(unpad_targets(gt7, mask7), unpad_targets(gt, mask))
    # max_gt equal to the largest count is accepted
    gt3, mask3 = pad_targets(TARGETS, 4, max_gt=3)
    assert torch.equal(gt3, gt) and torch.equal(mask3, mask)


def test_empty_targets():
    empty = torch.zeros(0, 6)
    gt, mask = pad_targets(empty, 3)
    # no targets: the largest count is 0, but G is never below 1 (the graph takes G >= 1): one masked zero slot
    assert gt.shape == (3, 1, 5) and mask.shape == (3, 1)
    assert not mask.any() and (gt == 0).all()
    assert unpad_targets(gt, mask).shape == (0, 6)
    gt, mask = pad_targets(empty, 3, max_gt=2)
    assert gt.shape == (3, 2, 5) and not mask.any() and (gt == 0).all()
    assert unpad_targets(gt, mask).shape == (0, 6)


def test_more_targets_than_max_gt_raises_naming_image_and_counts():
    # image 0 has 3 targets (rows 1, 2, 5); image 2 has 2, which still fits max_gt = 2
    with pytest.raises(ValueError, match=r"image 0 has 3 targets.*max_gt = 2"):
        pad_targets(TARGETS, 4, max_gt=2)
    # rows 0, 1, 3, 4: image 2 has 2 targets (rows 0, 4), images 0 and 1 one each -> only image 2 is over max_gt = 1
    t = TARGETS[[0, 1, 3, 4]]
    with pytest.raises(ValueError, match=r"image 2 has 2 targets.*max_gt = 1"):
        pad_targets(t, 3, max_gt=1)


@pytest.mark.parametrize("batch_size", [-1, 1.5, True, "4", None])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        pad_targets(TARGETS, batch_size)


def test_batch_size_smaller_than_an_image_index_raises():
    # image index 2 does not exist in a batch of 2
    with pytest.raises(ValueError, match="image index"):
        pad_targets(TARGETS, 2)


def test_a_batch_of_no_images():
    gt, mask = pad_targets(torch.zeros(0, 6), 0)
    assert gt.shape == (0, 1, 5) and mask.shape == (0, 1)
    gt, mask = pad_targets(torch.zeros(0, 6), 0, max_gt=4)
    assert gt.shape == (0, 4, 5) and mask.shape == (0, 4)


def test_more_targets_than_max_gt_without_validation_is_a_nan_real_slot():
    # image 0 has 3 targets (rows 1, 2, 5), max_gt = 2: slot 0 keeps row 1, the last slot (1) becomes a real slot of
    # NaN (the graph never assigns it and its loss is NaN); image 2 (2 targets) and image 1 fit and are untouched
    gt, mask = pad_targets(TARGETS, 4, max_gt=2, validate=False)
    assert gt.shape == (4, 2, 5)
    assert torch.equal(gt[0, 0], TARGETS[1, 1:]) and gt[0, 1].isnan().all()
    assert mask.tolist() == [[True, True], [True, False], [True, True], [False, False]]
    assert torch.equal(gt[1, 0], TARGETS[3, 1:]) and (gt[1, 1] == 0).all()
    assert torch.equal(gt[2], TARGETS[[0, 4], 1:]) and (gt[3] == 0).all()


@pytest.mark.parametrize("validate", ["False", 0, 1, None])
def test_validate_must_be_a_bool(validate):
    with pytest.raises(TypeError, match=r"validate must be a bool \(True or False\), got"):
        pad_targets(TARGETS, 4, validate=validate)


@pytest.mark.parametrize("max_gt", [-1, 0, 2.5, True])
def test_bad_max_gt_raises(max_gt):
    with pytest.raises(ValueError, match="max_gt"):
        pad_targets(TARGETS, 4, max_gt=max_gt)


def test_unpad_rejects_mismatched_shapes():
    gt, mask = pad_targets(TARGETS, 4)
    with pytest.raises(ValueError):
        unpad_targets(gt, mask[:, :2])
    with pytest.raises(ValueError):
        unpad_targets(gt[..., :4], mask)
