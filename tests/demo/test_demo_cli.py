"""``train-demo``: writes the JSON and the PNG, prints the table, one-line usage errors; matplotlib stays lazy."""

import json
import subprocess
import sys

import pytest

from yolox_export.cli.train_demo import main
from yolox_export.demo.report import check_schema

SMALL = ["--steps", "2", "--batch-size", "2", "--image-size", "64", "--dataset-size", "4", "--modes", "fast"]


def test_writes_json_png_and_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main([*SMALL, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    data = json.loads((tmp_path / "train_demo.json").read_text())
    check_schema(data)
    assert list(data["modes"]) == ["fast"] and len(data["modes"]["fast"]["reference"]) == 2
    assert (tmp_path / "train_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "same-input gap" in out and out.count("\nfast ") == 1
    assert "2/2" not in err  # no progress bar when stderr is not a terminal


def test_progress_bars_draw_the_librarys_callback():
    import io

    from yolox_export.cli.common import ProgressBars

    stream = io.StringIO()
    bars = ProgressBars("step", stream=stream, enabled=True)
    for done in range(1, 4):
        bars("fast", done, 3)
    assert "fast" in stream.getvalue() and "3/3" in stream.getvalue()


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--steps", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert main(["--image-size", "100", "--no-plot"]) == 2
    assert "divisible by 32" in capsys.readouterr().err


def test_library_imports_need_no_matplotlib():
    code = ("import sys, yolox_export.demo.report, yolox_export.demo.train, yolox_export.cli.train_demo; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_matplotlib_is_said_before_training(monkeypatch, capsys, tmp_path):
    import yolox_export.cli.train_demo as cli

    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert main([*SMALL, "--out", str(tmp_path)]) == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "train_demo.json").exists()
