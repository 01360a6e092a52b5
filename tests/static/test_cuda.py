"""Tests that need a CUDA device (marker ``cuda``; ``yolox-export gpu-check`` runs them with ``pytest -m cuda``).
Without a device each one skips with that reason."""

from __future__ import annotations

import pytest
import torch

from yolox_export import StaticYoloXLoss
from yolox_export.bench.settings import Case, Job
from yolox_export.bench.steps import cudagraph_step, make_inputs, padded_inputs
from yolox_export.config import MODES, LossConfig
from yolox_export.grid import Grid, level_shapes
from yolox_export.parity.comparison import compare
from yolox_export.parity.suite import build_suite
from yolox_export.static import PaddedYoloXLoss, padded_loss

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _cuda_batches(num_classes=20):
    batches = build_suite(seeds=1, batch_size=2, image_size=(320, 320), num_classes=num_classes)
    return [([p.cuda() for p in b.predictions], b.targets.cuda()) for b in batches]


@pytest.mark.parametrize("mode", MODES)
def test_static_on_cuda_matches_the_reference_on_cuda(mode):
    report = compare(_cuda_batches(), LossConfig((8, 16, 32), 20, mode=mode), ("static",))
    assert report, str(report)


@pytest.mark.parametrize("mode", MODES)
def test_cuda_graph_of_forward_and_backward_replays_eager(mode):
    case = Case("coco", 2, (320, 320), 20)
    job = Job(case, "static-cudagraph", mode, threads=1, repeats=1, warmup=0, max_seconds=1.0)
    inputs = make_inputs(case, "cuda")
    step = cudagraph_step(job, None, inputs, "fwd+bwd")
    components, grad = step.call()
    components, grad = components.clone(), grad.clone()

    module = PaddedYoloXLoss(LossConfig((8, 16, 32), 20, mode=mode), level_shapes(inputs.predictions)).cuda()
    raw, gt, mask = padded_inputs(inputs)  # what the captured graph's static inputs were filled with
    raw = raw.clone().requires_grad_(True)
    out = padded_loss(raw, gt, mask, Grid(module.x_shifts, module.y_shifts, module.strides), module.config)
    out.loss.backward()
    torch.testing.assert_close(components, out.components, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, raw.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_drop_in_forward_and_backward_make_no_host_sync_on_cuda(mode):
    batch = _cuda_batches()[0]
    predictions = [p.detach().clone().requires_grad_(True) for p in batch[0]]
    module = StaticYoloXLoss((8, 16, 32), 20, mode=mode, max_gt=64, validate=False)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, _ = module(predictions, batch[1])
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss.detach()).item()
