"""num_fg over ranks under torch.distributed (fast mode's sync_num_fgs; mmdet mode's reduce_mean): 2-process gloo
groups on the CPU."""

import os

from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from yolox_export import FastYoloXLoss, MMDetYoloXLoss, StaticYoloXLoss
from yolox_export.integrations.mmdet import MMDetLoss
from yolox_export.scenarios import make_scenario


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        s = make_scenario("coco", batch_size=2, image_size=(320, 320), num_classes=20, seed=10 + rank)
        results = {}
        for name, loss in (("static", StaticYoloXLoss(s.strides, 20, mode="fast", sync_num_fgs=True)),
                           ("reference", FastYoloXLoss(s.strides, 20, sync_num_fgs=True))):
            _, components = loss(s.predictions, s.targets)
            results[name] = components
        results["num_fg"] = max(int(StaticYoloXLoss(s.strides, 20, mode="fast").assign(s.predictions, s.targets).fg_mask.sum()), 1)
        results["num_gts"] = int(s.targets.shape[0])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sync_num_fgs_averages_num_fg_over_two_gloo_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    mean_fg = (ranks[0]["num_fg"] + ranks[1]["num_fg"]) / 2
    assert ranks[0]["num_fg"] != ranks[1]["num_fg"]  # the ranks really disagree, so averaging shows
    for r in ranks:
        # component 4 is num_fg / num_gts, num_fg being the average over the ranks
        torch.testing.assert_close(r["static"][4], torch.tensor(mean_fg / r["num_gts"]), rtol=1e-6, atol=0)
        torch.testing.assert_close(r["static"], r["reference"], rtol=1e-5, atol=1e-6)


def _mmdet_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """Rank 0 a batch with targets, rank 1 one without: the static mmdet mode, the reference and MMDetLoss."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        s = make_scenario("coco" if rank == 0 else "empty", batch_size=2, image_size=(64, 64), num_classes=3,
                          seed=2, box_format="xyxy")
        results = {}
        for name, loss in (("static", StaticYoloXLoss(s.strides, 3, mode="mmdet")),
                           ("reference", MMDetYoloXLoss(s.strides, 3))):
            _, results[name], assignment = loss.loss_and_assignment(s.predictions, s.targets)
        maps = [p[:, 0].permute(0, 3, 1, 2) for p in s.predictions]  # mmdetection's layout [B, 5 + C, H, W]
        gts = [SimpleNamespace(bboxes=s.targets[s.targets[:, 0] == b, 2:], labels=s.targets[s.targets[:, 0] == b, 1])
               for b in range(2)]
        results["mmdet"] = {key: value.detach() for key, value in MMDetLoss(3, s.strides).loss_by_feat(
            [m[:, 5:] for m in maps], [m[:, :4] for m in maps], [m[:, 4:5] for m in maps], gts, [{}, {}]).items()}
        results["num_pos"] = int(assignment.fg_mask.sum())  # this rank's positive count
        obj = torch.cat([p[..., 4].reshape(2, -1) for p in s.predictions], 1)  # [B, A]
        results["obj_sum"] = F.binary_cross_entropy_with_logits(obj, assignment.fg_mask.float(), reduction="sum")
        results["num_gts"] = int(s.targets.shape[0])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_mmdet_mode_divides_by_the_clamped_mean_of_the_ranks_positive_counts(tmp_path):
    mp.spawn(_mmdet_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    counts = [r["num_pos"] for r in ranks]
    assert counts[0] >= 2 and counts[1] == 0  # then averaging before clamping differs from clamping first
    num_total = max((counts[0] + counts[1]) / 2, 1.0)  # mmdetection: max(reduce_mean(num_pos), 1)
    assert num_total != (max(counts[0], 1) + max(counts[1], 1)) / 2
    for r in ranks:
        # component 4 is num_fg / max(num_gts, 1), num_fg being num_total
        torch.testing.assert_close(r["static"][4], torch.tensor(num_total / max(r["num_gts"], 1)), rtol=1e-6, atol=0)
        torch.testing.assert_close(r["static"], r["reference"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["mmdet"]["loss_obj"], r["obj_sum"] / num_total, rtol=1e-5, atol=0)
        torch.testing.assert_close(r["mmdet"]["loss_cls"], r["reference"][2], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["mmdet"]["loss_bbox"], 5.0 * r["reference"][0], rtol=1e-5, atol=1e-6)


def test_the_graph_never_averages_over_ranks_while_the_drop_in_does(tmp_path, monkeypatch):
    """In a process group (one gloo rank), mmdet mode's drop-in averages num_pos over the ranks (one all-reduce), as
    mmdetection does; the padded graph module (what is exported) never does: an export from a DDP script must not
    trace a collective, and the graph's loss is the same whatever the process group."""
    from yolox_export import LossConfig, PaddedYoloXLoss
    from yolox_export.export.contract import graph_feeds
    from yolox_export.grid import level_shapes

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        calls = []
        real = dist.all_reduce
        monkeypatch.setattr(dist, "all_reduce", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
        s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0, box_format="xyxy")
        StaticYoloXLoss(s.strides, 3, mode="mmdet")(s.predictions, s.targets)
        assert len(calls) == 1
        feeds = graph_feeds(s.predictions, s.targets, box_format=LossConfig(s.strides, 3, mode="mmdet").box_format)
        PaddedYoloXLoss(LossConfig(s.strides, 3, mode="mmdet"), level_shapes(s.predictions))(*feeds.values())
        assert len(calls) == 1
    finally:
        dist.destroy_process_group()
