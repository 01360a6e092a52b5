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
