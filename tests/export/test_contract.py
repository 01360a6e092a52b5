"""graph_feeds' numpy form: the arrays onnxruntime's InferenceSession.run takes, equal to the torch feeds."""

import numpy as np
import pytest
import torch

from yolox_export.export.contract import INPUT_NAMES, graph_feeds

STRIDES, CLASSES, IMAGE = (8, 16, 32), 3, 64  # grids 8x8, 4x4, 2x2: A = 84 cells


def levels(batch=2):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 1, IMAGE // s, IMAGE // s, 5 + CLASSES, generator=gen, requires_grad=True)
            for s in STRIDES]


def test_numpy_feeds_equal_the_torch_feeds_with_onnxruntime_dtypes():
    targets = torch.tensor([[0, 1, 32.0, 30.0, 20.0, 16.0], [0, 2, 20.0, 40.0, 12.0, 10.0],
                            [1, 0, 10.0, 10.0, 8.0, 8.0]])
    tensors = graph_feeds(levels(), targets)
    arrays = graph_feeds(levels(), targets, numpy=True)
    assert list(arrays) == list(INPUT_NAMES)
    assert [arrays[name].dtype for name in INPUT_NAMES] == [np.float32, np.float32, np.bool_]
    assert arrays["predictions"].shape == (2, 84, 5 + CLASSES)
    assert arrays["targets"].shape == (2, 2, 5)  # image 0 has 2 targets: G = 2, image 1 padded with a masked slot
    assert arrays["target_mask"].tolist() == [[True, True], [True, False]]
    for name in INPUT_NAMES:
        assert isinstance(arrays[name], np.ndarray)
        torch.testing.assert_close(torch.from_numpy(arrays[name]), tensors[name].detach(), rtol=0, atol=0)


def test_numpy_feeds_of_an_empty_batch_keep_one_masked_slot():
    arrays = graph_feeds(levels(), torch.zeros((0, 6)), numpy=True)
    assert arrays["targets"].shape == (2, 1, 5) and not arrays["target_mask"].any()


def test_numpy_must_be_a_bool():
    with pytest.raises(TypeError, match="numpy"):
        graph_feeds(levels(), torch.zeros((0, 6)), numpy="True")
