"""Tests for yolox_export.export.presets and the preset files in models/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yolox_export.export.presets import DEFAULT_PRESET, PRESET_DIR, Preset, load_preset, parse_range

ROOT = Path(__file__).resolve().parents[2]
PRESET_FILES = sorted(PRESET_DIR.glob("*.toml"))

GOOD = """\
name = "custom"
image_size = [320, 480]
strides = [8, 16, 32]
num_classes = 3
mode = "fast"
batch = "2:4:8"
max_gt = [1, 10, 50]
opset = 18
"""


def _write(tmp_path, text, name="preset.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _replace(key, line):
    lines = [line if current.startswith(f"{key} =") else current for current in GOOD.splitlines()]
    return "\n".join(lines) + "\n"


def _without(key):
    return "\n".join(line for line in GOOD.splitlines() if not line.startswith(f"{key} =")) + "\n"


def test_expected_preset_files_exist():
    names = {path.stem for path in PRESET_FILES}
    assert {"yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x"} <= names
    assert (PRESET_DIR / f"{DEFAULT_PRESET}.toml").is_file()


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.stem)
def test_every_preset_loads(path):
    preset = load_preset(path)
    assert preset.name == path.stem
    side = 416 if path.stem in ("yolox_nano", "yolox_tiny") else 640
    assert preset.image_size == (side, side)
    assert preset.strides == (8, 16, 32)
    assert preset.num_classes == 80 and preset.mode == "regular" and preset.opset == 20
    assert preset.batch == (1, 8, 32)
    assert preset.max_gt[0] == 1 and preset.max_gt[0] <= preset.max_gt[1] <= preset.max_gt[2]


def test_num_anchors():
    assert load_preset(PRESET_DIR / "yolox_s.toml").num_anchors == 8400
    assert load_preset(PRESET_DIR / "yolox_nano.toml").num_anchors == 3549


def test_custom_preset_and_range_text(tmp_path):
    preset = load_preset(_write(tmp_path, GOOD))
    assert preset == Preset("custom", (320, 480), (8, 16, 32), 3, "fast", (2, 4, 8), (1, 10, 50), 18)


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("name", 'name = ""'),
        ("image_size", "image_size = [320]"),
        ("image_size", "image_size = [320, -480]"),
        ("strides", "strides = [8, 16, 0]"),
        ("strides", "strides = [8, 16, 64]"),
        ("strides", "strides = []"),
        ("num_classes", "num_classes = 0"),
        ("num_classes", "num_classes = true"),
        ("mode", 'mode = "slow"'),
        ("batch", "batch = [4, 2, 8]"),
        ("batch", 'batch = "0:1:2"'),
        ("batch", 'batch = "1:2"'),
        ("max_gt", "max_gt = [1, 10]"),
        ("opset", "opset = 16"),
        ("opset", "opset = 25"),
        ("opset", 'opset = "20"'),
    ],
)
def test_invalid_value_names_file_and_key(tmp_path, key, line):
    path = _write(tmp_path, _replace(key, line))
    with pytest.raises(ValueError, match=rf"preset\.toml: key '{key}'"):
        load_preset(path)


@pytest.mark.parametrize("key", ["name", "strides", "batch", "opset"])
def test_missing_key_is_named(tmp_path, key):
    with pytest.raises(ValueError, match=rf"preset\.toml: missing key\(s\) \['{key}'\]"):
        load_preset(_write(tmp_path, _without(key)))


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_clases'\]"):
        load_preset(_write(tmp_path, GOOD + "num_clases = 80\n"))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"broken\.toml: not valid TOML"):
        load_preset(_write(tmp_path, "name = [unclosed\n", "broken.toml"))
    with pytest.raises(FileNotFoundError, match="absent.toml"):
        load_preset(tmp_path / "absent.toml")


def test_direct_construction_is_checked():
    with pytest.raises(ValueError, match="key 'mode'"):
        Preset("p", (64, 64), (8,), 1, "other", (1, 1, 1), (1, 1, 1), 20)
    preset = Preset("p", [64, 64], [8], 1, "regular", [1, 2, 3], [1, 1, 1], 20)
    assert preset.image_size == (64, 64) and preset.batch == (1, 2, 3)


@pytest.mark.parametrize(("text", "expected"), [("1:8:16", (1, 8, 16)), ("4:4:4", (4, 4, 4)), (" 1: 2 :3", (1, 2, 3))])
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "1:8", "1:8:16:32", "a:b:c", "1.5:2:3", "0:1:2", "3:2:1", "1:3:2"])
def test_parse_range_rejects(text):
    with pytest.raises(ValueError):
        parse_range(text)


def test_with_grad_is_an_optional_key(tmp_path):
    from yolox_export.export.presets import with_overrides

    assert load_preset(_write(tmp_path, GOOD)).with_grad is False  # left out: no gradient output
    preset = load_preset(_write(tmp_path, GOOD + "with_grad = true\n", "grad.toml"))
    assert preset.with_grad is True
    with pytest.raises(ValueError, match="'with_grad'"):
        load_preset(_write(tmp_path, GOOD + 'with_grad = "yes"\n', "bad.toml"))
    assert with_overrides(load_preset(_write(tmp_path, GOOD)), with_grad=True).with_grad is True


def test_output_names_follow_the_contract_order():
    from yolox_export.export.contract import (AUDIT_OUTPUT_NAMES, GRAD_OUTPUT_NAMES, OUTPUT_NAMES,
                                              TARGET_OUTPUT_NAMES, output_names)

    assert OUTPUT_NAMES[-1] == "image_loss" and GRAD_OUTPUT_NAMES == ("predictions_grad",)
    assert AUDIT_OUTPUT_NAMES == ("target_k", "target_cells")
    assert output_names() == OUTPUT_NAMES + AUDIT_OUTPUT_NAMES
    assert output_names(with_targets=True, with_grad=True) == (OUTPUT_NAMES + TARGET_OUTPUT_NAMES + AUDIT_OUTPUT_NAMES
                                                               + GRAD_OUTPUT_NAMES)


@pytest.mark.parametrize("key, value, limit", [("batch", (1, 1, 4097), "4096"), ("max_gt", (1, 1, 65537), "65536"),
                                               ("max_gt", (99999999999,) * 3, "65536")])
def test_ranges_beyond_the_exporters_dimension_bounds_are_refused(key, value, limit):
    with pytest.raises(ValueError, match=f"key '{key}'.*<= {limit}"):
        dataclasses.replace(load_preset("yolox_nano"), **{key: value})


@pytest.mark.parametrize("changes", [dict(image_size=(100000, 100000)), dict(num_classes=10**9)])
def test_a_predictions_input_beyond_tensorrts_element_limit_is_refused(changes):
    with pytest.raises(ValueError, match="2147483647"):
        dataclasses.replace(load_preset("yolox_nano"), **changes)
