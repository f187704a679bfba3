"""The benchmark harness's same-run ratios and its refusal to report mislabelled figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness


def test_alternate_interleaves_and_ratio_to_takes_the_median_of_per_round_ratios():
    calls = []
    runs = harness.alternate({"ref": lambda: calls.append("ref") or 10,
                              "ours": lambda: calls.append("ours") or {"items": 5, "extra": 1}}, 3)
    assert calls == ["ref", "ours"] * 3  # A, B, A, B ...: drifting load hits both alike
    assert runs["ours"][0]["extra"] == 1 and all(r["items"] == 5 for r in runs["ours"])
    reference = [{"items_per_second": v} for v in (100, 100, 50)]
    measured = [{"items_per_second": v} for v in (60, 20, 40)]
    result = harness.ratio_to(reference, measured, "ref")
    assert result["ratio_per_round"] == [0.6, 0.2, 0.8] and result["ratio"] == 0.6
    assert result["reference"] == "ref" and "cpu_ratio" not in result


def test_check_stops_a_benchmark_that_measured_something_else():
    harness.check("stage", {"images": 2000, "source": "sample"}, {"images": 2000, "source": "sample"})
    with pytest.raises(SystemExit, match="images is 1600, expected 20000"):
        harness.check("stage", {"images": 1600, "source": "local"}, {"images": 20000})
    with pytest.raises(SystemExit, match="source is 'local', expected 'sample'"):
        harness.check("stage", {"images": 20000, "source": "local"}, {"images": 20000, "source": "sample"})


def test_the_decode_reference_decodes_every_file_and_refuses_unreadable_ones():
    import cv2
    import numpy as np

    jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    with harness.DecodeReference([jpeg] * 40, workers=1, chunk=8) as decode:
        assert decode() == 40
    with harness.DecodeReference([jpeg, b"not an image"], workers=1) as decode:
        with pytest.raises(SystemExit, match="only 1 of 2"):
            decode()
