"""The yolox-export command: one subcommand table, thin scripts, presets found from any directory, outputs named
after what was exported."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from yolox_export import cli
from yolox_export.export.pipeline import default_output_dir
from yolox_export.export.presets import DEFAULT_PRESET, load_preset, shipped_presets, with_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_module_has_a_parser_and_main(name):
    module = importlib.import_module(cli.SUBCOMMANDS[name].module)
    assert callable(module.build_parser) and callable(module.main)
    script = ROOT / "scripts" / f"{name.replace('-', '_')}.py"  # train-demo -> scripts/train_demo.py
    assert "sys.path" not in script.read_text()


def test_unknown_subcommand_is_a_one_line_error(capsys):
    assert cli.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'nope'") and err.count("\n") == 1


def test_subcommand_gets_the_remaining_arguments(capsys):
    assert cli.main(["export", "--preset", "no_such_preset"]) == 2
    err = capsys.readouterr().err
    assert "preset not found: no_such_preset" in err and "yolox_s" in err


def test_shipped_presets_by_name():
    assert DEFAULT_PRESET in shipped_presets()
    assert set(shipped_presets()) == {"yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x"}
    assert load_preset("yolox_nano").num_anchors == 3549  # 416x416: 52^2 + 26^2 + 13^2


def test_output_is_named_after_the_overrides_that_change_the_graph():
    preset = load_preset("yolox_s")
    assert with_overrides(preset).name == "yolox_s"
    assert with_overrides(preset, mode="regular", num_classes=80).name == "yolox_s"  # the preset's own values
    changed = with_overrides(preset, mode="fast", num_classes=20, image_size=(320, 320), batch=(1, 2, 4))
    assert changed.name == "yolox_s_fast_c20_320x320" and changed.batch == (1, 2, 4)
    with pytest.raises(ValueError, match=r"unknown preset field\(s\) \['num_clases'\]"):
        with_overrides(preset, num_clases=3)


def test_default_output_folder_is_models_of_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_output_dir() == tmp_path / "models"


def test_script_run_from_another_directory_exports_the_default_preset_to_its_models_folder(tmp_path):
    # the default preset (yolox_s), exported and checked; the file lands in ./models/ of the working directory
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), "--no-timing"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "models" / "yolox_s.onnx").is_file()
    assert "preset     yolox_s:" in run.stdout and "all passed" in run.stdout


def test_help_describes_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in cli.SUBCOMMANDS.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert command.summary in line and len(command.summary) > 20


def test_version_prints_the_package_version(capsys):
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"yolox-export {version('yolox-export')}\n"


def test_no_arguments_prints_the_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommands_help_names_every_mode_and_each_options_default(name):
    import argparse

    from yolox_export.config import MODES

    parser = importlib.import_module(cli.SUBCOMMANDS[name].module).build_parser()
    assert parser.prog == f"yolox-export {name}"
    shows_defaults = issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    flags = (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)
    for action in parser._actions:
        if "--modes" in action.option_strings or "--mode" in action.option_strings:
            assert all(mode in action.help for mode in MODES), (name, action.help)
        if action.option_strings and not isinstance(action, flags):
            assert action.help and (shows_defaults or "default" in action.help), (name, action.option_strings)


def test_parity_help_says_its_default_modes_and_names_every_mode():
    from yolox_export.cli.parity import build_parser
    from yolox_export.config import MODES
    from yolox_export.parity.suite import DEFAULT_MODES

    text = " ".join(build_parser().format_help().split())
    assert f"(default: {' '.join(DEFAULT_MODES)}, the modes of (cx, cy, w, h) targets" in text
    assert f"of {', '.join(MODES)}" in text and "both modes" not in text


def test_an_unexpected_error_is_one_line_exit_1_unless_the_traceback_is_asked_for(monkeypatch, capsys):
    import yolox_export.cli.gpu_check as gpu_check_cli
    from yolox_export.cli import main

    def broken(argv):
        raise RuntimeError("deep failure\nsecond line")

    monkeypatch.setattr(gpu_check_cli, "main", broken)
    assert main(["gpu-check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gpu-check failed: RuntimeError: deep failure" in err
    monkeypatch.setenv("YOLOX_EXPORT_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["gpu-check"])
