"""The built-in sample dataset: layout, determinism, and that it is no trivial task."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from deepfake_detector.core import params as params_module
from deepfake_detector.data.sources import canonical, sample, sample_fakes, sample_render

REPO = Path(__file__).resolve().parents[1]


def sample_params(**overrides) -> SimpleNamespace:
    values = dict(seed=7, difficulty=0.5, image_size=256, train=9, validation=4, test=5)
    values.update(overrides)
    return SimpleNamespace(**values)


def default_params(**overrides) -> SimpleNamespace:
    """``data.sample`` from the project's params.yaml: the tests check the shipped default."""
    section = params_module.load_section("data", REPO / "params.yaml").sample
    return SimpleNamespace(**{**vars(section), **overrides})


def test_layout_counts_and_jpegs(tmp_path):
    dest = tmp_path / "sample.zip"
    summary = sample.generate(dest, sample_params(), workers=1, progress=False)

    with zipfile.ZipFile(dest) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert len(names) == len(set(names)) == 18
        pattern = re.compile(r"Dataset/(Train|Validation|Test)/(Real|Fake)/s\d{7}\.jpg")
        assert all(pattern.fullmatch(name) for name in names), names
        counts = {}
        for name in names:
            key = tuple(name.split("/")[1:3])
            counts[key] = counts.get(key, 0) + 1
        # half Real, half Fake; an odd split gives Real the extra image
        assert counts == {("Train", "Real"): 5, ("Train", "Fake"): 4, ("Validation", "Real"): 2,
                          ("Validation", "Fake"): 2, ("Test", "Real"): 3, ("Test", "Fake"): 2}
        for info in infos:  # written like a repacked local archive: stored, fixed time, a Unix file
            assert (info.compress_type, info.date_time, info.create_system, info.external_attr >> 16) == (
                zipfile.ZIP_STORED, canonical.ZIP_DATE, 3, canonical.FILE_MODE)
            data = archive.read(info)
            assert data[:2] == b"\xff\xd8"
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (256, 256)
                image.load()

    assert summary["images"] == 18
    assert summary["splits"]["train"] == {"Real": 5, "Fake": 4}
    assert summary["splits"]["test"] == {"Real": 3, "Fake": 2}
    assert sum(summary["manipulations"].values()) == 8
    assert set(summary["manipulations"]) == set(sample_fakes.KINDS)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_file_names_do_not_reveal_the_label():
    rows = sample.plan(sample_params(train=200, validation=2, test=2))
    ids = [int(row.name[-11:-4]) for row in rows]
    assert ids == list(range(len(rows)))  # running ids across the dataset...
    labels = np.array([row.label for row in rows[:200]])
    assert 0 < labels[::2].mean() < 1 and 0 < labels[1::2].mean() < 1  # ...not alternating by label


def test_well_made_share_is_exact_per_split():
    rows = sample.plan(sample_params(difficulty=1.0, train=2000, validation=2, test=401))
    well_made = {split: sum(row.well_made for row in rows if row.split == split)
                 for split in ("train", "test")}
    assert well_made == {"train": 60, "test": 12}  # 6 % of 1000 and of 200 fakes
    assert all(row.label == 1 for row in rows if row.well_made)  # only fakes are well made


def test_other_image_size(tmp_path):
    dest = tmp_path / "small.zip"
    params = sample_params(image_size=96, train=2, validation=2, test=2)
    sample.generate(dest, params, workers=1, progress=False)
    with zipfile.ZipFile(dest) as archive:
        for name in archive.namelist():
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.size == (96, 96)


def test_byte_identical_whatever_the_worker_count(tmp_path):
    params = sample_params(train=40, validation=6, test=6)
    one = tmp_path / "one.zip"
    two = tmp_path / "two.zip"
    sample.generate(one, params, workers=1, progress=False)
    sample.generate(two, params, workers=2, progress=False)
    assert one.read_bytes() == two.read_bytes()
    other = tmp_path / "other.zip"
    sample.generate(other, sample_params(train=40, validation=6, test=6, seed=8), workers=1, progress=False)
    assert other.read_bytes() != one.read_bytes()


# --- no shortcut -----------------------------------------------------------------------------

# The IJG (libjpeg) luminance table at quality 50, in natural order; quality q scales it.
IJG_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24,
                     40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77,
                     24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95,
                     98, 112, 100, 103, 99])


def _quality_tables() -> np.ndarray:
    qualities = np.arange(1, 101)
    scale = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    return np.clip((IJG_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)


QUALITY_TABLES = np.sort(_quality_tables(), axis=1)


def estimate_quality(image: Image.Image) -> int:
    """The JPEG quality an attacker reads off the file: the IJG quality whose luminance table is
    closest (order-free, so zigzag or natural order does not matter)."""
    table = np.sort(np.asarray(image.quantization[0]))
    return int(np.abs(QUALITY_TABLES - table).sum(axis=1).argmin()) + 1


def global_stats(path: Path):
    rows, labels = [], []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            with Image.open(io.BytesIO(data)) as image:
                quality = estimate_quality(image)
                pixels = np.asarray(image.convert("RGB"), np.float32)
            rows.append([*pixels.mean(axis=(0, 1)), *pixels.std(axis=(0, 1)), len(data), quality])
            labels.append(int("/Fake/" in name))
    return np.array(rows), np.array(labels)


def test_quality_estimate_reads_the_encoder_setting():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for quality in (70, 83, 95):
        data = sample_render.encode_jpeg(pixels.astype(np.float32), quality)
        with Image.open(io.BytesIO(data)) as image:
            assert estimate_quality(image) == quality


@pytest.mark.slow  # renders 600 images
def test_no_global_statistics_shortcut(tmp_path):
    """Mean colour, contrast, file size and JPEG quality must not give the label away."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    dest = tmp_path / "shortcut.zip"
    sample.generate(dest, default_params(train=600, validation=2, test=2), workers=0, progress=False)
    features, labels = global_stats(dest)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    auc = cross_val_score(model, features, labels, cv=folds, scoring="roc_auc").mean()
    assert auc < 0.65, f"global statistics separate real from fake: ROC-AUC {auc:.3f}"


# --- difficulty ------------------------------------------------------------------------------


def _ring(scene, inner: float, outer: float) -> np.ndarray:
    """Pixels between two scaled copies of the manipulation region's ellipse."""
    def inside(scale):
        return sample_fakes.face_mask(scene, 1e-3, radius_u=0.8 * scale, radius_v=0.75 * scale)[..., 0] > 0.5
    return inside(outer) & ~inside(inner) if inner > 0 else inside(outer)


def artifact_features(data: bytes, scene) -> list[float]:
    """Crude, label-agnostic trace statistics of one image, located with the scene's head pose:
    noise level in the face vs around it, a period-4 pattern in the face, a tone step and a seam."""
    import cv2

    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    grey = rgb.mean(axis=2)
    high = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
    face, around = _ring(scene, 0, 0.7), _ring(scene, 1.15, 1.6)
    noise = np.log((high[face] ** 2).mean() / (high[around] ** 2).mean())
    ys, xs = np.nonzero(face)
    phases = [high[ys[(ys % 4 == a) & (xs % 4 == b)], xs[(ys % 4 == a) & (xs % 4 == b)]].mean()
              for a in range(4) for b in range(4)]
    period = np.log(np.var(phases) + 1e-4)
    skin_in, skin_out = _ring(scene, 0.6, 0.9), _ring(scene, 1.05, 1.2)
    tone = np.abs(rgb[skin_in].mean(axis=0) / rgb[skin_out].mean(axis=0) - 1).sum()
    gradient = np.hypot(*np.gradient(grey))
    seam = np.log(gradient[_ring(scene, 0.93, 1.07)].mean() / gradient[_ring(scene, 0.75, 0.9)].mean())
    return [noise, period, tone, seam]


def detectability(tmp_path: Path, difficulty: float) -> float:
    """Cross-validated ROC-AUC of a small random forest on ``artifact_features`` (a forest, as
    each manipulation moves a different feature, in either direction)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    params = sample_params(seed=11, difficulty=difficulty, train=300, validation=2, test=2)
    dest = tmp_path / f"difficulty-{difficulty}.zip"
    sample.generate(dest, params, workers=0, progress=False)
    features, labels = [], []
    with zipfile.ZipFile(dest) as archive:
        for row in sample.plan(params)[:300]:
            seed, split_index, index, *_, size = row.job
            scene = sample_render.draw_scene(np.random.default_rng([seed, split_index, index]), size)
            features.append(artifact_features(archive.read(row.name), scene))
            labels.append(row.label)
    model = RandomForestClassifier(200, min_samples_leaf=3, random_state=0, n_jobs=1)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_score(model, np.array(features), np.array(labels), cv=folds, scoring="roc_auc").mean()


@pytest.mark.slow  # renders 600 images
def test_difficulty_scales_the_traces(tmp_path):
    """Crude trace statistics find the fakes of difficulty 0 far more easily than those of 1."""
    blatant, faint = detectability(tmp_path, 0.0), detectability(tmp_path, 1.0)
    assert blatant > 0.97 and blatant > faint + 0.05, (blatant, faint)
