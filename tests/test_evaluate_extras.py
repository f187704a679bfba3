"""Evaluation beyond one number: corruptions, extra sets in other layouts, calibration, pictures."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from badimages import photo
from deepfake_detector.evaluation import metrics as evaluation
from deepfake_detector.evaluation import extrasets
from deepfake_detector.model import inference
from deepfake_detector.data import records
from deepfake_detector.evaluation import robustness
from deepfake_detector.core.errors import ParamError
from extraset import other_layout_zip
from trained import run_cli


def test_each_corruption_degrades_as_named_and_keeps_the_size():
    rgb = photo(1, 256, 256)
    out = {name: corrupt(rgb, 3) for name, corrupt in robustness.CORRUPTIONS.items()}
    assert set(out) == {"jpeg_q50", "blur_sigma1", "downscale_x0.5", "noise_sigma5"}
    for name, image in out.items():
        assert image.shape == rgb.shape and image.dtype == np.uint8, name
        assert np.abs(image.astype(int) - rgb).mean() > 0.5, name

    def detail(image):  # high-frequency energy: what blur and down-up scaling remove
        return np.abs(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F)).mean()

    assert detail(out["blur_sigma1"]) < 0.7 * detail(rgb)
    assert detail(out["downscale_x0.5"]) < 0.8 * detail(rgb)
    residual = out["noise_sigma5"].astype(float) - rgb
    assert 4.0 < residual.std() < 6.0  # σ = 5, a little less where clipped at 0 or 255
    assert np.array_equal(out["noise_sigma5"], robustness.noise(rgb, 3))  # seeded: same every run
    assert not np.array_equal(out["noise_sigma5"], robustness.noise(rgb, 4))


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    scores = rng.random(20000)
    labels = (rng.random(20000) < scores).astype(int)  # P(fake) = score exactly
    assert evaluation.expected_calibration_error(labels, scores) < 0.02
    overconfident = np.where(scores >= 0.5, 0.99, 0.01)
    assert evaluation.expected_calibration_error(labels, overconfident) > 0.2
    points = evaluation.reliability_points(labels, scores)
    assert len(points) == 10 and sum(p["images"] for p in points) == 20000
    assert all(abs(p["mean_score"] - p["fraction_fake"]) < 0.03 for p in points)
    assert "ece" in evaluation.summarize(labels, scores, 0.5)


@pytest.mark.slow
def test_a_corrupted_copy_is_scored_as_predict_scores_the_corrupted_file(trained, tmp_path):
    """Each test image corrupted, written as a file (the JPEG bytes as they are; the others as
    lossless PNG) and scored by `predict --no-detect`: the same P(fake) as robustness gives."""
    catalog = records.load_catalog(trained / "data/processed")
    files = records.split_files(trained / "data/processed", catalog, "test")
    scorer = inference.Scorer.load(trained / "models/model.keras")
    chosen = {"jpeg_q50": robustness.jpeg, "noise_sigma5": robustness.noise}
    scored = robustness.score_corrupted(scorer, files, 16, chosen)
    clean = scorer.score_records(files, catalog["image_size"], 16)
    folder = tmp_path / "corrupted"
    folder.mkdir()
    for image, label, index in records.decoded_dataset(files):
        bgr = cv2.cvtColor(image.numpy(), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"jpeg_q50-{int(index)}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 50])
        noisy = robustness.noise(image.numpy(), int(index))
        cv2.imwrite(str(folder / f"noise_sigma5-{int(index)}.png"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
    code, _, err = run_cli(trained, "predict", str(folder), "--no-detect",
                           "--output", str(tmp_path / "p.csv"))
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "p.csv").query("kind == 'file'")
    rows["name"] = rows["file"].map(lambda p: Path(p).stem.split("-")[0])
    rows["index"] = rows["file"].map(lambda p: int(Path(p).stem.split("-")[1]))
    for name, frame in scored.items():
        assert len(frame) == len(clean) == 64
        assert (frame["index"].to_numpy() == clean["index"].to_numpy()).all()
        both = frame.merge(rows[rows["name"] == name], on="index", validate="one_to_one")
        np.testing.assert_allclose(both["score"], both["p_fake"], rtol=0, atol=1e-5)
        assert np.abs(frame["score"].to_numpy() - clean["score"].to_numpy()).max() > 1e-4, name


@pytest.mark.slow
def test_an_extra_set_in_another_layout_is_scored_as_predict_scores_it(trained, tmp_path):
    zip_path, counts = other_layout_zip(tmp_path / "other.zip")
    scorer = inference.Scorer.load(trained / "models/model.keras")
    frame, details = extrasets.score_set(scorer, zip_path, 8)
    assert details["skipped"] == {"truncated": 1}
    assert (frame["label"] == 0).sum() == counts["real"] and (frame["label"] == 1).sum() == counts["fake"]
    assert all(n.startswith("faces/0_real/") for n in frame.loc[frame["label"] == 0, "name"])

    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    code, _, err = run_cli(trained, "predict", str(folder), "--no-detect",
                           "--output", str(tmp_path / "p.csv"))
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "p.csv").query("kind == 'file'")
    rows["name"] = rows["file"].map(lambda p: Path(p).relative_to(folder).as_posix())
    both = frame.merge(rows, on="name", validate="one_to_one")
    assert len(both) == counts["real"] + counts["fake"]
    np.testing.assert_allclose(both["score"], both["p_fake"], rtol=0, atol=1e-5)

    summary = extrasets.summarize(frame, 0.5, details["skipped"])
    assert (summary["n_real"], summary["n_fake"], summary["skipped"]) == (counts["real"], counts["fake"], 1)
    assert 0 <= summary["roc_auc"] <= 1 and 0 <= summary["balanced_accuracy"] <= 1


def test_an_extra_set_that_is_not_a_folder_or_zip_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for bad in (tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(ParamError, match=r"evaluate\.extra_sets\.other=.* is not a folder or a \.zip"):
            extrasets.check_paths({"other": str(bad)})
    extrasets.check_paths({"ok": str(tmp_path)})
