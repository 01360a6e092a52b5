"""The graph's audit outputs ``target_k`` / ``target_cells`` (contract version 2): int64 [B, G], 0 at masked slots,
the graph's own ``matched_gt`` counted per slot, and equal to the eager audit (``StaticYoloXLoss.audit``): bit for
bit in eager torch (one arithmetic), under onnxruntime with any difference explained by ties (parity's analysis,
``parity.audit``). The onnxruntime graphs are the session's shared exports (conftest ``shared_export``)."""

import pytest
import torch
from support import SHARED_CLASSES, SHARED_IMAGE, SHARED_SHAPES, shared_config

from yolox_export.assignment import Assignment
from yolox_export.config import MODES
from yolox_export.export.contract import graph_feeds
from yolox_export.export.runners import EagerRunner
from yolox_export.parity.audit import explained_rows, graph_fields
from yolox_export.scenarios import make_scenario
from yolox_export.static import StaticYoloXLoss


def batches(config):
    return [make_scenario(kind, batch_size=2, image_size=SHARED_IMAGE, num_classes=SHARED_CLASSES, seed=seed,
                          box_format=config.box_format.name) for kind, seed in (("crowded", 0), ("coco", 1))]


def feeds_of(s, config):
    counts = torch.bincount(s.targets[:, 0].long(), minlength=2)
    return graph_feeds(s.predictions, s.targets, max_gt=int(counts.max()) + 2, box_format=config.box_format)


def check_outputs(out, feeds):
    k, cells, matched = out["target_k"], out["target_cells"], out["matched_gt"]
    mask = feeds["target_mask"]
    assert k.dtype == cells.dtype == torch.int64 and k.shape == cells.shape == mask.shape
    assert not bool(k[~mask].any() | cells[~mask].any())
    counted = torch.stack([(matched == g).sum(-1) for g in range(mask.shape[1])], 1)  # [B, G]
    assert torch.equal(cells, counted)


@pytest.mark.parametrize("mode", MODES)
def test_eager_graph_outputs_are_the_audit_bit_for_bit(mode):
    config = shared_config(mode)
    runner = EagerRunner(config, SHARED_SHAPES)
    for s in batches(config):
        feeds = feeds_of(s, config)
        out = runner.run(feeds)
        check_outputs(out, feeds)
        audit = StaticYoloXLoss.from_config(config).audit(s.predictions, s.targets)
        got = graph_fields(out, s.targets, 2)
        assert torch.equal(got["k"], audit.k) and torch.equal(got["cells"], audit.cells)


def test_onnxruntime_outputs_equal_the_eager_audit(shared_export, ort_runner):
    mode, path = shared_export
    config = shared_config(mode)
    runner = ort_runner(path)
    module = StaticYoloXLoss.from_config(config)
    exact = rows = 0
    for s in batches(config):
        feeds = feeds_of(s, config)
        out = runner.run(feeds)
        check_outputs(out, feeds)
        audit, eager = module.audit(s.predictions, s.targets), module.assign(s.predictions, s.targets)
        got = graph_fields(out, s.targets, 2)
        differs = (got["k"] != audit.k) | (got["cells"] != audit.cells)
        graph = Assignment(out["fg_mask"], out["matched_gt"], out["matched_iou"])
        explained = explained_rows(differs, s.predictions, s.targets, config, audit, got, eager, graph, input_ulps=2)
        assert bool(explained[differs].all()), differs.nonzero().flatten().tolist()
        exact, rows = exact + int((~differs).sum()), rows + len(audit)
    assert exact > 0.9 * rows
