"""files.py: outputs are written whole or not at all."""

import pytest

from yolox_export.files import atomic_path, write_atomically


def test_write_atomically_writes_text_and_bytes_creating_the_folder(tmp_path):
    assert write_atomically(tmp_path / "a" / "r.json", "{}\n").read_text() == "{}\n"
    assert write_atomically(tmp_path / "e.engine", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "e.engine", "r.json"]  # no temporary left


def test_an_interrupted_write_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old model")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".onnx" and temporary != target
            temporary.write_text("half a mod")
            raise KeyboardInterrupt
    assert target.read_text() == "old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


# --- which paths are ours to write (files.output_problem and friends) ------------------------------------------

import os
import socket

import onnx
from onnx import TensorProto, helper

from yolox_export.files import (ENGINE_NAMES, OutputPathError, check_output, folder_problem, output_problem,
                                write_json, write_markdown)


def tiny_graph(path, metadata=None):
    """A one-node ONNX graph; with ``metadata`` (key -> value) in its metadata_props."""
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_a_new_file_in_a_writable_folder_is_ours_and_a_missing_parent_is_created_later(tmp_path):
    assert output_problem(tmp_path / "new.onnx", "onnx") is None
    assert output_problem(tmp_path / "a" / "b" / "r.json", "json") is None
    assert not (tmp_path / "a").exists()  # the probe leaves nothing behind
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["onnx", "json", "markdown", "png", "engine"])
def test_devices_are_never_ours(kind):
    assert "character device" in output_problem("/dev/null", kind)


def test_fifos_sockets_folders_and_symlinks_to_them_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "FIFO" in output_problem(fifo, "json")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        assert "socket" in output_problem(tmp_path / "sock", "json")
    finally:
        sock.close()
    assert "is a folder" in output_problem(tmp_path, "json")
    (tmp_path / "to_null").symlink_to("/dev/null")
    assert "symlink to /dev/null, which is a character device" in output_problem(tmp_path / "to_null", "onnx")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    assert "does not exist; not followed" in output_problem(tmp_path / "dangling", "json")


def test_files_this_tool_did_not_write_are_refused(tmp_path):
    empty, two = tmp_path / "empty.onnx", tmp_path / "two.onnx"
    empty.write_bytes(b"")
    two.write_bytes(b"ab")
    tensor = tmp_path / "tensor.onnx"  # parses as a ModelProto, as almost anything does
    tensor.write_bytes(helper.make_tensor("x", TensorProto.FLOAT, [1], [1.0]).SerializeToString())
    plain = tiny_graph(tmp_path / "plain.onnx")  # a real graph, not ours: no metadata
    for path in (empty, two, tensor, plain):
        assert "was not written by yolox-export" in output_problem(path, "onnx"), path
    for kind, content in (("json", '{"passed": true}'), ("markdown", "# bench\n"), ("png", b"\x89PNG\r\n\x1a\n"),
                          ("engine", b"ftrt engine of another model")):
        path = tmp_path / f"x.{kind}"
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        assert "not overwritten" in output_problem(path, kind), kind
    assert [p.read_bytes() for p in (empty, two)] == [b"", b"ab"]


def test_files_this_tool_wrote_are_ours(tmp_path):
    ours = tiny_graph(tmp_path / "ours.onnx", {"yolox_export.version": "0", "mode": "fast"})
    assert output_problem(ours, "onnx") is None
    assert output_problem(write_json(tmp_path / "r.json", {"passed": True}), "json") is None
    assert output_problem(write_markdown(tmp_path / "r.md", "# table\n"), "markdown") is None
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"\x00".join([b"plan", *ENGINE_NAMES, b"end"]))
    assert output_problem(engine, "engine") is None
    (tmp_path / "link.json").symlink_to(tmp_path / "r.json")  # a symlink to a file of ours: followed, link kept
    write_json(tmp_path / "link.json", {"passed": False})
    assert (tmp_path / "link.json").is_symlink() and '"passed": false' in (tmp_path / "r.json").read_text()


def test_a_figure_carries_the_marker(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from yolox_export.files import save_figure

    figure = pyplot.figure(figsize=(1, 1))
    path = save_figure(figure, tmp_path / "p.png", dpi=10)
    pyplot.close(figure)
    assert output_problem(path, "png") is None
    pyplot.figure(figsize=(1, 1)).savefig(tmp_path / "theirs.png", dpi=10)  # matplotlib's own: not ours
    assert "not overwritten" in output_problem(tmp_path / "theirs.png", "png")


@pytest.mark.parametrize("name, reason", [("a\0b.json", "null byte"), ("a\nb.json", "control character"),
                                          ("x" * 300 + ".json", "over this file system's limit")])
def test_names_the_os_refuses_are_refused_up_front(tmp_path, name, reason):
    assert reason in output_problem(tmp_path / name, "json")
    with pytest.raises(OutputPathError, match=reason) as error:
        check_output(tmp_path / name, "json")
    assert "\n" not in str(error.value)  # the name is shown escaped: one line


def test_a_parent_where_nothing_can_be_created_is_named(tmp_path):
    assert "cannot create files in /proc" in output_problem("/proc/a.onnx", "onnx")
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert "is not a folder" in output_problem(file / "out.json", "json")


def test_an_atomic_write_never_replaces_a_non_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="FIFO"):
        write_atomically(fifo, "x")
    target = tmp_path / "out.json"
    with pytest.raises(OutputPathError, match="FIFO"):
        with atomic_path(target) as temporary:  # the path became a FIFO while the output was being written
            temporary.write_text("{}")
            os.mkfifo(target)
    assert fifo.is_fifo() and target.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "out.json"]


def test_a_folder_and_the_files_written_inside_it_are_checked(tmp_path):
    assert folder_problem(tmp_path / "new") is None
    (tmp_path / "file").write_text("x")
    assert "is a file; give a folder" in folder_problem(tmp_path / "file")
    assert "character device; give a folder" in folder_problem("/dev/null")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.json").write_text("{}")
    assert "bench.json: exists and was not written" in folder_problem(out, {"bench.json": "json"})
    (out / "fast_static_batch000_image00.png").write_bytes(b"")
    assert "image00.png: exists" in folder_problem(out, {"*_batch*_image*.png": "png"})
    assert folder_problem(out, {"other.json": "json"}) is None
