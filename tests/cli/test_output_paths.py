"""Output paths are checked before any work: one line on stderr, exit 2, nothing written or overwritten; a preset's
name never leads out of the output folder; an export is written atomically."""

import dataclasses
import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from yolox_export.cli import main
from yolox_export.cli.common import output_dir_problem, output_file_problem
from yolox_export.export.presets import load_preset, resolve_preset


def tiny_onnx(path, metadata=()):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    for key in metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, "x"
    onnx.save(model, str(path))
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
    assert err.count("\n") == 1 and "was not written by yolox-export" in err and "not overwritten" in err
    assert notes.read_text() == "my notes"


def test_an_existing_graph_of_this_tool_may_be_replaced_another_onnx_model_not(tmp_path):
    ours = tiny_onnx(tmp_path / "old.onnx", metadata=("yolox_export.version", "mode"))
    assert output_file_problem(ours, "--output", "onnx") is None
    assert "not overwritten" in output_file_problem(tiny_onnx(tmp_path / "theirs.onnx"), "--output", "onnx")


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
    assert "is not a folder" in output_file_problem(file / "out.json", "--json", "json")
    assert "is not a folder" in output_dir_problem(file / "sub", "--out")
    assert output_file_problem(tmp_path / "new" / "deeper" / "out.json", "--json", "json") is None  # created later


def _special(kind, tmp_path):
    """A path that is not ours to write: a device, a FIFO, foreign files, a symlink to a device."""
    if kind == "device":
        return "/dev/null"
    path = tmp_path / f"special_{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "two bytes":
        path.write_bytes(b"ab")
    elif kind == "tensor":
        path.write_bytes(helper.make_tensor("x", TensorProto.FLOAT, [1], [1.0]).SerializeToString())
    else:
        path.symlink_to("/dev/null")
    return str(path)


SPECIAL = ["device", "fifo", "empty", "two bytes", "tensor", "symlink to a device"]


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("command", [["export", "--preset", "yolox_nano", "--no-timing", "--output", "{path}"],
                                     ["export", "--preset", "yolox_nano", "--no-timing", "--output", "{new}",
                                      "--engine", "{path}"],
                                     ["parity", "--json", "{path}"]])
def test_a_file_that_is_not_ours_is_refused_before_any_work_and_kept(command, kind, tmp_path, capsys):
    path = _special(kind, tmp_path)
    before = os.lstat(path)
    content = Path(path).read_bytes() if kind in ("empty", "two bytes", "tensor") else None
    assert main([a.format(path=path, new=tmp_path / "new.onnx") for a in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and err.count("\n") == 1 and "Traceback" not in err, err
    assert path in err
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if content is not None:
        assert Path(path).read_bytes() == content
    assert not (tmp_path / "new.onnx").exists()
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("command, name", [(["bench", "--quick", "--out", "{dir}"], "bench.json"),
                                           (["bench", "--quick", "--out", "{dir}"], "bench.md"),
                                           (["train-demo", "--out", "{dir}"], "train_demo.png"),
                                           (["train-demo", "--out", "{dir}", "--no-plot"], "train_demo.json"),
                                           (["gpu-check", "--out", "{dir}"], "gpu.json"),
                                           (["gpu-check", "--out", "{dir}"], "gpu_models/a.engine"),
                                           (["parity", "--plot", "{dir}"], "fast_static_batch000_image00.png")])
@pytest.mark.parametrize("kind", ["fifo", "two bytes"])
def test_a_file_inside_an_output_folder_that_is_not_ours_is_refused(command, name, kind, tmp_path, capsys):
    folder = tmp_path / "out"
    (folder / name).parent.mkdir(parents=True)
    special = Path(_special(kind, tmp_path))
    special.rename(folder / name)
    assert main([a.format(dir=folder) for a in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and err.count("\n") == 1 and name in err, err
    assert (folder / name).is_fifo() if kind == "fifo" else (folder / name).read_bytes() == b"ab"


@pytest.mark.parametrize("name, reason", [("a\0b.json", "null byte"), ("a\nb.json", "control character"),
                                          ("x" * 300 + ".json", "limit of")])
def test_an_output_name_the_os_refuses_is_one_line(name, reason, tmp_path, capsys):
    assert main(["parity", "--json", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err


def test_an_output_under_proc_is_refused_before_the_export(capsys):
    assert main(["export", "--preset", "yolox_nano", "--no-timing", "--output", "/proc/a.onnx"]) == 2
    assert "cannot create files in /proc" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["two\nlines", "nul\0byte", "tab\tname", "x" * 200])
def test_a_preset_name_the_os_would_refuse_is_invalid(name):
    with pytest.raises(ValueError, match="key 'name'"):
        dataclasses.replace(load_preset("yolox_nano"), name=name)


def test_a_preset_file_with_a_newline_in_its_name_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "evil.toml"
    preset.write_text(resolve_preset("yolox_nano").read_text().replace('name = "yolox_nano"', 'name = "a\\nb"'))
    assert main(["export", "--preset", str(preset), "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "control character" in err and not (tmp_path / "models").exists()
