"""Synthetic detection data: filled shapes of a few classes on random backgrounds, exact boxes, no download.

Every image is a function of (seed, image index) alone, so a data set is reproducible and can be rebuilt anywhere.
Boxes are (cx, cy, w, h) in pixels and exact: each box is the tight bounding box of the pixels its shape paints.
Shapes never touch (a one-pixel gap at least), so no pixel belongs to two objects. The background's channels stay at
or below ``BACKGROUND_MAX`` and every shape has one channel at or above ``SHAPE_MIN``, so a pixel is painted by a
shape exactly when its brightest channel exceeds the midpoint between them.

Shape legend: N images, n objects of one image, H = W = image size in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Class names, in class-id order; a data set with C classes uses the first C.
SHAPES = ("rectangle", "ellipse", "triangle", "cross")
#: Brightest channel value of the background and the smallest brightest channel of a shape.
BACKGROUND_MAX = 0.45
SHAPE_MIN = 0.6
#: Placement attempts per object before an image keeps the objects it already has.
PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class DataSpec:
    """What the generator draws: square images of ``image_size`` pixels, ``min_objects``..``max_objects`` shapes of
    ``num_classes`` classes, each side ``min_side``..``max_side`` pixels (aspect ratio within 1:2)."""

    image_size: int = 128
    num_classes: int = 3
    min_objects: int = 1
    max_objects: int = 4
    min_side: int = 12
    max_side: int = 48

    def __post_init__(self) -> None:
        for name in ("image_size", "num_classes", "min_objects", "max_objects", "min_side", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.num_classes > len(SHAPES):
            raise ValueError(f"num_classes must be at most {len(SHAPES)} ({', '.join(SHAPES)}), got {self.num_classes}")
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must not exceed max_objects ({self.max_objects})")
        if self.min_side > self.max_side or self.max_side > self.image_size - 2 or self.min_side < 4:
            raise ValueError(f"need 4 <= min_side <= max_side <= image_size - 2, got min_side={self.min_side}, "
                             f"max_side={self.max_side}, image_size={self.image_size}")


@dataclass
class Sample:
    """One image [3, H, W] in [0, 1], its boxes [n, 4] (cx, cy, w, h, pixels), classes int64 [n], masks bool [n, H, W]."""

    image: Tensor
    boxes: Tensor
    classes: Tensor
    masks: Tensor


@dataclass
class Dataset:
    """N images [N, 3, H, W] and, per image, its targets [n, 5] (class, cx, cy, w, h)."""

    images: Tensor
    targets: list[Tensor]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, 3, H, W] and targets [N, 6] (image index in the batch, class, cx, cy, w, h) of ``indices``."""
        rows = [torch.cat((torch.full((len(self.targets[i]), 1), float(b)), self.targets[i]), 1)
                for b, i in enumerate(indices.tolist())]
        return self.images[indices], torch.cat(rows) if rows else torch.zeros((0, 6))


def shape_mask(kind: str, height: int, width: int) -> Tensor:
    """bool [height, width]: the shape drawn in its box, tested at pixel centres. Rectangle, ellipse and cross
    touch all four sides; the triangle (apex up) may miss the top row, which is why boxes are taken from masks."""
    y = (torch.arange(height, dtype=torch.float64) + 0.5).unsqueeze(1)  # [h, 1]
    x = (torch.arange(width, dtype=torch.float64) + 0.5).unsqueeze(0)  # [1, w]
    u, v = (x - width / 2) / (width / 2), (y - height / 2) / (height / 2)  # [-1, 1] across the box
    if kind == "rectangle":
        return (u.abs() <= 1) & (v.abs() <= 1)
    if kind == "ellipse":
        return u**2 + v**2 <= 1
    if kind == "triangle":
        return (u.abs() <= y / height) & (v.abs() <= 1)
    if kind == "cross":
        return (u.abs() <= 1 / 3) | (v.abs() <= 1 / 3)
    raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")


def tight_box(mask: Tensor) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), ends exclusive, of the True pixels of a non-empty bool [h, w] mask."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _uniform(generator: torch.Generator, low: float, high: float, shape=()) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def background(size: int, generator: torch.Generator) -> Tensor:
    """[3, size, size] float64: a random colour, a random linear gradient and pixel noise, every value in
    [0, BACKGROUND_MAX]."""
    base = _uniform(generator, 0.05, 0.25, (3, 1, 1))
    ramp = torch.linspace(0.0, 1.0, size, dtype=torch.float64)
    direction = _uniform(generator, -0.1, 0.1, (3, 2))
    gradient = direction[:, :1, None] * ramp.view(1, 1, size) + direction[:, 1:, None] * ramp.view(1, size, 1)
    noise = _uniform(generator, 0.0, 0.1, (3, size, size))
    return (base + gradient + noise).clamp(0.0, BACKGROUND_MAX)


def shape_colour(generator: torch.Generator) -> Tensor:
    """[3] float64: random channels, one of them raised to at least SHAPE_MIN."""
    colour = _uniform(generator, 0.0, 1.0, (3,))
    colour[_randint(generator, 0, 2)] = float(_uniform(generator, SHAPE_MIN + 0.1, 1.0))
    return colour


def _overlaps(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    """Whether ``box`` comes within one pixel of a placed box (so painted pixels never touch)."""
    x0, y0, x1, y1 = box
    return any(x0 <= px1 and px0 <= x1 and y0 <= py1 and py0 <= y1 for px0, py0, px1, py1 in placed)


def render_image(spec: DataSpec, generator: torch.Generator) -> Sample:
    """One image drawn from ``generator``: background, then shapes at random free places."""
    size = spec.image_size
    image = background(size, generator)
    wanted = _randint(generator, spec.min_objects, spec.max_objects)
    placed: list[tuple[int, int, int, int]] = []
    classes, masks = [], []
    for _ in range(wanted):
        for _ in range(PLACEMENT_TRIES):
            cls = _randint(generator, 0, spec.num_classes - 1)
            width = _randint(generator, spec.min_side, spec.max_side)
            height = min(max(_randint(generator, width // 2, 2 * width), spec.min_side), spec.max_side)
            local = shape_mask(SHAPES[cls], height, width)
            lx0, ly0, lx1, ly1 = tight_box(local)
            local = local[ly0:ly1, lx0:lx1]
            x0, y0 = _randint(generator, 0, size - local.shape[1]), _randint(generator, 0, size - local.shape[0])
            box = (x0, y0, x0 + local.shape[1], y0 + local.shape[0])
            if not _overlaps(box, placed):
                break
        else:
            break
        mask = torch.zeros((size, size), dtype=torch.bool)
        mask[box[1]:box[3], box[0]:box[2]] = local
        image = torch.where(mask, shape_colour(generator).view(3, 1, 1), image)
        placed.append(box)
        classes.append(cls)
        masks.append(mask)
    corners = torch.tensor(placed, dtype=torch.float32).reshape(-1, 4)  # [n, 4] x0, y0, x1, y1
    boxes = torch.cat(((corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]), 1)
    mask_stack = torch.stack(masks) if masks else torch.zeros((0, size, size), dtype=torch.bool)
    return Sample(image.float(), boxes, torch.tensor(classes, dtype=torch.long), mask_stack)


def image_generator(seed: int, index: int) -> torch.Generator:
    """The generator of image ``index`` of the data set with ``seed``: images are independent of each other."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def make_dataset(spec: DataSpec, size: int, seed: int) -> Dataset:
    """``size`` images of ``spec``, image i drawn from ``image_generator(seed, i)``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"data set size must be an int >= 1, got {size!r}")
    samples = [render_image(spec, image_generator(seed, i)) for i in range(size)]
    targets = [torch.cat((s.classes.float().unsqueeze(1), s.boxes), 1) for s in samples]
    return Dataset(torch.stack([s.image for s in samples]), targets)


def batch_order(size: int, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    """Image indices [batch_size] of each of ``steps`` batches: epochs of seeded permutations of ``size`` images,
    a batch never straddling two epochs (the tail of each permutation that does not fill a batch is skipped)."""
    if batch_size > size:
        raise ValueError(f"batch_size ({batch_size}) must not exceed the data set size ({size})")
    generator = torch.Generator().manual_seed(seed)
    per_epoch = size // batch_size
    order: list[Tensor] = []
    while len(order) < steps:
        permutation = torch.randperm(size, generator=generator)
        order.extend(permutation[i * batch_size:(i + 1) * batch_size] for i in range(per_epoch))
    return order[:steps]
