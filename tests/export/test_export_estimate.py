"""An unrolled chunked export's estimate (``export.estimate``) and its limit: the chunk count, a time and size that
grow with it, refused past ``MAX_UNROLLED_CHUNKS`` unless allowed, by the library and the command line, before any
work."""

import pytest

from yolox_export.cli import main
from yolox_export.export.estimate import MAX_UNROLLED_CHUNKS, chunked_export_estimate
from yolox_export.export.onnx_export import export_onnx
from yolox_export.export.presets import Preset


def preset(g, mode="fast"):
    return Preset(name="est", image_size=(64, 64), strides=(8, 16, 32), num_classes=3, mode=mode, batch=(1, 2, 4),
                  max_gt=(g, g, g), opset=20)


def test_the_chunk_count_is_g_over_n_rounded_up_and_cost_grows_with_it():
    small, large = chunked_export_estimate(preset(12), 5), chunked_export_estimate(preset(40), 1)
    assert (small.chunks, large.chunks) == (3, 40)  # 12 / 5 -> 5, 5, 2
    assert small.seconds < large.seconds and small.bytes < large.bytes
    assert not small.over_limit and large.over_limit
    assert "40 chunk(s) unrolled" in str(large) and "MB" in str(large)
    assert chunked_export_estimate(preset(40, "regular"), 1).seconds > large.seconds


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_a_chunk_size_that_is_not_a_positive_integer_is_refused(n):
    with pytest.raises(ValueError, match="targets_per_chunk"):
        chunked_export_estimate(preset(8), n)


def test_the_library_refuses_a_large_unrolled_export_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=f"over the limit of {MAX_UNROLLED_CHUNKS} chunks"):
        export_onnx(preset(MAX_UNROLLED_CHUNKS + 1), tmp_path / "big.onnx", targets_per_chunk=1)
    assert list(tmp_path.iterdir()) == []


def test_the_command_refuses_it_in_one_line_naming_the_flag(tmp_path, capsys):
    argv = ["export", "--preset", "yolox_nano", "--no-timing", "--num-classes", "3", "--image-size", "64", "64",
            "--max-gt", "40:40:40", "--targets-per-chunk", "1", "--output", str(tmp_path / "big.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "40 chunk(s)" in err and "--allow-large-export" in err and "estimated" in err
    assert not (tmp_path / "big.onnx").exists()
