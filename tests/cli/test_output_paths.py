"""Output paths are checked before any work: one line on stderr, exit 2, nothing written or overwritten; a preset's
name never leads out of the output folder; an export is written atomically."""

import dataclasses

import onnx
import pytest
from onnx import TensorProto, helper

from yolox_export.cli import main
from yolox_export.cli.common import output_dir_problem, output_file_problem
from yolox_export.export.presets import load_preset, resolve_preset


def tiny_onnx(path):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("name", ["../../somewhere/x", "/tmp/absolute", "sub/name", "back\\slash", "..", " padded"])
def test_a_preset_name_that_leaves_the_output_folder_is_refused(name):
    with pytest.raises(ValueError, match="key 'name'"):
        dataclasses.replace(load_preset("yolox_nano"), name=name)


def test_export_refuses_a_name_that_leaves_the_folder_without_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "evil.toml"
    text = resolve_preset("yolox_nano").read_text()
    preset.write_text(text.replace('name = "yolox_nano"', 'name = "../escaped"'))
    assert 'name = "../escaped"' in preset.read_text()
    assert main(["export", "--preset", str(preset), "--no-timing"]) == 2
    assert "key 'name'" in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped.onnx").exists() and not (tmp_path / "models").exists()


def test_export_onto_a_file_that_is_not_onnx_is_refused_and_the_file_kept(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert main(["export", "--preset", "yolox_nano", "--no-timing", "--output", str(notes)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an ONNX model; not overwritten" in err
    assert notes.read_text() == "my notes"


def test_an_existing_onnx_model_may_be_replaced(tmp_path):
    assert output_file_problem(tiny_onnx(tmp_path / "old.onnx"), "--output", onnx=True) is None


@pytest.mark.parametrize("command", [["export", "--preset", "yolox_nano", "--no-timing", "--output", "{dir}"],
                                     ["parity", "--json", "{dir}"],
                                     ["parity", "--plot", "{file}"],
                                     ["bench", "--quick", "--out", "{file}"],
                                     ["train-demo", "--out", "{file}", "--no-plot"],
                                     ["gpu-check", "--out", "{file}"]])
def test_a_wrong_kind_of_output_path_is_a_one_line_exit_2_before_any_work(command, tmp_path, capsys):
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("keep")
    argv = [a.format(dir=folder, file=file) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and err.count("\n") == 1, err
    assert file.read_text() == "keep" and list(folder.iterdir()) == []


def test_a_missing_or_unusable_parent_is_named(tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert "is not a folder" in output_file_problem(file / "out.json", "--json")
    assert "is not a folder" in output_dir_problem(file / "sub", "--out")
    assert output_file_problem(tmp_path / "new" / "deeper" / "out.json", "--json") is None  # created later
