"""sync_num_fgs under torch.distributed: a 2-process gloo group on the CPU."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from yolox_export import FastYoloXLoss, StaticYoloXLoss
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
