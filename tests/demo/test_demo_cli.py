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


def exit_code(argv) -> int:
    """``main(argv)``'s exit code, also when argparse exits."""
    try:
        return main(argv)
    except SystemExit as error:
        return error.code


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1", "1e400", "x"])
def test_a_learning_rate_that_is_not_finite_and_positive_is_one_line_exit_2(lr, tmp_path, capsys):
    assert exit_code([*SMALL, "--no-plot", "--lr", lr, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lr" in err and "finite number > 0" in err
    assert not (tmp_path / "out").exists()


def test_a_diverging_run_is_one_line_exit_1_and_a_rerun_replaces_its_own_files(tmp_path, capsys):
    assert main([*SMALL, "--no-plot", "--steps", "6", "--lr", "1e6", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged at step" in err and "not finite" in err and "Traceback" not in err
    assert not (tmp_path / "train_demo.json").exists()
    assert main([*SMALL, "--no-plot", "--out", str(tmp_path)]) == 0
    assert main([*SMALL, "--no-plot", "--out", str(tmp_path)]) == 0  # its own JSON: replaced
    capsys.readouterr()
    (tmp_path / "train_demo.json").write_text("{}")  # no longer ours
    assert main([*SMALL, "--no-plot", "--out", str(tmp_path)]) == 2
    assert "was not written by yolox-export" in capsys.readouterr().err
    assert (tmp_path / "train_demo.json").read_text() == "{}"


@pytest.mark.parametrize("argv", [["--threads", "100000"], ["--seed", "-1"], ["--seed", str(2**64)]])
def test_other_out_of_range_arguments_are_one_line_exit_2(argv, tmp_path, capsys):
    assert exit_code([*SMALL, "--no-plot", *argv, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
