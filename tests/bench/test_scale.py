"""bench/scale.py: the crowded-scale preset, its table (time and peak memory per mode, subject and G, or why a
subject stopped) and its plot, from hand-made records."""

import pytest

from yolox_export import bench
from yolox_export.bench.scale import plot_scale, scale_table
from yolox_export.reference import REFERENCES


def record(mode, subject, count, measurement, seconds=None, peak_mib=None, error=None):
    return {"mode": mode, "subject": subject, "measurement": measurement,
            "case": {"kind": "crowded", "batch": 16, "image_size": [640, 640], "targets_per_image": count},
            "status": "ok" if error is None else "error", "error": error, "median_s": seconds,
            "peak_extra_bytes": None if peak_mib is None else peak_mib * 2**20}


def records():
    rows = []
    for count, ref_s in ((100, 2.0), (700, None)):
        for measurement in ("fwd", "fwd+bwd"):
            rows.append(record("fast", "fast", count, measurement, ref_s, 50,
                               None if ref_s else "timed out after 45 s"))
            rows.append(record("fast", "static", count, measurement, 0.5, 300))
            rows.append(record("fast", "static-unchunked", count, measurement, 0.9, 3000))
    return rows


def test_scale_preset_sweeps_g_with_the_budget_on_and_off():
    settings = bench.make_settings("scale")
    assert settings.targets_per_image == (100, 300, 700, 1000) and settings.batches == (16,)
    assert {"static", "static-unchunked", *REFERENCES} == set(settings.subjects)
    assert dict(bench.SUBJECTS["static-unchunked"].options) == {"max_memory_mib": None}


def test_scale_table_says_where_a_subject_stopped_and_why():
    lines = scale_table(records())
    assert "fast mode:" in lines
    row_100 = next(line for line in lines if line.startswith("| 16 | 100 |"))
    row_700 = next(line for line in lines if line.startswith("| 16 | 700 |"))
    assert "2.00 s / 50 MiB" in row_100 and "0.50 s / 300 MiB" in row_100 and "0.90 s / 3000 MiB" in row_100
    assert "stopped: timed out after 45 s" in row_700
    assert scale_table([]) == []


def test_scale_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_scale(records(), tmp_path / "scale.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_scale([], tmp_path / "none.png") is None
