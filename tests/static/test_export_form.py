"""static/export_form.py: the one switch between the eager and the export-safe forms."""

import pytest
import torch

from yolox_export.static.export_form import export_form, exporting


def test_eager_outside_the_context_and_export_safe_inside_nested_and_restored():
    assert not exporting()
    with export_form():
        assert exporting()
        with export_form():
            assert exporting()
        assert exporting()
    assert not exporting()


def test_an_exception_inside_restores_the_eager_form():
    with pytest.raises(RuntimeError), export_form():
        raise RuntimeError("boom")
    assert not exporting()


def test_true_inside_torch_onnx_export(monkeypatch):
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert exporting()
