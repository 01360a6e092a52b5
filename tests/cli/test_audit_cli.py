"""yolox-export audit: one recorded batch (table by starvation), a folder (totals per class and size bucket),
pictures of the worst images, settings from the file, outputs in ./results/, one-line input errors (exit 2)."""

import json

import pytest
import torch

from yolox_export.audit.totals import SIZE_BUCKETS, box_areas
from yolox_export.cli import SUBCOMMANDS
from yolox_export.cli import audit as audit_cli
from yolox_export.scenarios import make_scenario


def record(path, kind="crowded", seed=0, **extra):
    s = make_scenario(kind, batch_size=2, image_size=(64, 64), num_classes=3, seed=seed,
                      box_format="xyxy" if extra.get("mode") == "mmdet" else "cxcywh")
    torch.save({"predictions": s.predictions, "targets": s.targets, **extra}, path)
    return s


def test_registered():
    assert SUBCOMMANDS["audit"].module == "yolox_export.cli.audit"


def test_one_batch_writes_the_table_and_pictures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    s = record(tmp_path / "step.pt")
    monkeypatch.chdir(tmp_path)
    assert audit_cli.main(["--recorded", "step.pt", "--rows", "3", "--max-images", "1"]) == 0
    out = capsys.readouterr().out
    assert "regular mode" in out and "STARVED" in out
    rows = json.loads((tmp_path / "results" / "audit.json").read_text())["rows"]
    assert len(rows) == s.targets.shape[0]
    table = (tmp_path / "results" / "audit.txt").read_text().splitlines()
    assert len(table) == s.targets.shape[0] + 2 and table[1].endswith("STARVED")  # sorted by starvation
    assert len(list((tmp_path / "results").glob("audit_step_image*.png"))) == 1


def test_a_folder_gives_totals_per_class_and_size_with_the_files_settings(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "batches"
    folder.mkdir()
    scenarios = [record(folder / f"b{i}.pt", kind, i, mode="mmdet", strides=[8, 16, 32])
                 for i, kind in enumerate(("crowded", "coco"))]
    monkeypatch.chdir(tmp_path)
    assert audit_cli.main(["--recorded", "batches", "--max-images", "0", "--out", "here"]) == 0
    assert "mmdet mode" in capsys.readouterr().out
    totals = json.loads((tmp_path / "here" / "audit_totals.json").read_text())
    count = sum(int(s.targets.shape[0]) for s in scenarios)
    assert totals["batches"] == 2 and totals["overall"]["targets"] == count
    assert sum(t["targets"] for t in totals["by_class"].values()) == count
    assert sum(t["targets"] for t in totals["by_size"].values()) == count
    assert not list((tmp_path / "here").glob("*.png"))
    assert [name for name, _ in SIZE_BUCKETS] == list(totals["by_size"])


def test_size_buckets_are_cocos_areas_in_pixels():
    from yolox_export.audit import static_audit  # noqa: F401 - the package imports without matplotlib
    from yolox_export.audit.totals import size_buckets
    from yolox_export.config import LossConfig
    from yolox_export.static import StaticYoloXLoss

    levels = [torch.zeros((1, 1, 256 // s, 256 // s, 5 + 3)) for s in (8, 16, 32)]
    # areas 31 * 33 = 1023 (small), 32 * 32 = 1024 (medium), 96 * 96 - 1 (medium), 96 * 96 (large)
    rows = torch.tensor([[0, 0, 100, 100, 31, 33], [0, 1, 100, 100, 32, 32], [0, 2, 100, 100, 97, 9215 / 97],
                         [0, 0, 100, 100, 96, 96]])
    audit = StaticYoloXLoss.from_config(LossConfig((8, 16, 32), 3)).audit(levels, rows)
    assert box_areas(audit)[:2].tolist() == [1023.0, 1024.0]
    assert size_buckets(audit) == ["small", "medium", "medium", "large"]


@pytest.mark.parametrize("argv, message", [
    (["--recorded", "missing.pt"], "no such file or folder"),
    (["--recorded", "empty"], "a folder without .pt files"),
    (["--recorded", "bad.pt"], "bad.pt"),
])
def test_input_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "bad.pt").write_text("not a tensor file")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert audit_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
