"""The synthetic data set: exact boxes read back from the pixels, inside the image, seeded determinism."""

import pytest
import torch

from yolox_export.demo.data import (BACKGROUND_MAX, SHAPE_MIN, SHAPES, DataSpec, background, batch_order,
                                    image_generator, make_dataset, render_image, shape_mask, tight_box)

SPEC = DataSpec(image_size=96, num_classes=4, max_objects=5)


def painted(image: torch.Tensor) -> torch.Tensor:
    """bool [H, W]: pixels a shape painted (brightest channel above the background's ceiling)."""
    return image.amax(0) > (BACKGROUND_MAX + SHAPE_MIN) / 2


def test_tight_box_hand_case():
    mask = torch.zeros(5, 7, dtype=torch.bool)
    mask[1:4, 2:6] = True  # rows 1..3, columns 2..5 -> x0=2, y0=1, x1=6, y1=4
    assert tight_box(mask) == (2, 1, 6, 4)


@pytest.mark.parametrize("kind", ["rectangle", "ellipse", "cross"])
@pytest.mark.parametrize("height, width", [(12, 12), (12, 24), (31, 16), (48, 48)])
def test_shapes_touch_all_four_sides_of_their_box(kind, height, width):
    assert tight_box(shape_mask(kind, height, width)) == (0, 0, width, height)


def test_unknown_shape_is_named():
    with pytest.raises(ValueError, match="hexagon"):
        shape_mask("hexagon", 10, 10)


def test_background_stays_below_the_shape_threshold():
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        values = background(64, generator)
        assert 0 <= float(values.min()) and float(values.max()) <= BACKGROUND_MAX


@pytest.mark.parametrize("index", range(12))
def test_boxes_are_exactly_the_painted_pixels(index):
    sample = render_image(SPEC, image_generator(7, index))
    paint = painted(sample.image)
    assert sample.masks.shape == (len(sample.boxes), 96, 96)
    assert torch.equal(paint, sample.masks.any(0))  # nothing painted outside the objects, every object visible
    for box, mask in zip(sample.boxes.tolist(), sample.masks):
        cx, cy, w, h = box
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
        assert all(float(v).is_integer() for v in (x0, y0, x1, y1))
        assert tight_box(mask) == (int(x0), int(y0), int(x1), int(y1))
    assert int(sample.masks.sum(0).max()) <= 1  # no pixel belongs to two objects


def test_classes_cover_the_requested_range():
    data = make_dataset(SPEC, 40, seed=1)
    classes = torch.cat([t[:, 0] for t in data.targets]).long()
    assert set(classes.tolist()) == set(range(len(SHAPES)))
    assert all(len(t) >= 1 for t in data.targets)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_dataset(SPEC, 6, seed=5), make_dataset(SPEC, 6, seed=5), make_dataset(SPEC, 6, seed=6)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x, y) for x, y in zip(a.targets, b.targets))
    assert not torch.equal(a.images, c.images)


def test_image_depends_only_on_seed_and_index():
    small, large = make_dataset(SPEC, 3, seed=2), make_dataset(SPEC, 8, seed=2)
    assert torch.equal(small.images, large.images[:3])


def test_global_rng_untouched():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_dataset(SPEC, 2, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_batch_rows_carry_the_batch_image_index():
    data = make_dataset(SPEC, 6, seed=0)
    images, targets = data.batch(torch.tensor([4, 1]))
    assert torch.equal(images, data.images[[4, 1]])
    expected = torch.cat((torch.cat((torch.zeros(len(data.targets[4]), 1), data.targets[4]), 1),
                          torch.cat((torch.ones(len(data.targets[1]), 1), data.targets[1]), 1)))
    assert torch.equal(targets, expected)


def test_batch_order_is_seeded_epochs_of_permutations():
    order = batch_order(10, 3, 7, seed=4)  # 3 batches per epoch, the 10th image of each permutation skipped
    assert len(order) == 7 and all(len(b) == 3 for b in order)
    for epoch in (order[0:3], order[3:6]):
        seen = torch.cat(epoch).tolist()
        assert len(set(seen)) == 9
    assert all(torch.equal(x, y) for x, y in zip(order, batch_order(10, 3, 7, seed=4)))
    assert not all(torch.equal(x, y) for x, y in zip(order, batch_order(10, 3, 7, seed=5)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=5), "num_classes must be at most 4"),
    (dict(num_classes=0), "num_classes must be an int >= 1"),
    (dict(min_objects=3, max_objects=2), "min_objects"),
    (dict(image_size=32, max_side=40), "max_side"),
])
def test_bad_spec_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataSpec(**kwargs)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="data set size"):
        make_dataset(SPEC, 0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        batch_order(4, 5, 1, seed=0)
