"""Each training augmentation, measured on Validation in-domain and on a corrupted copy of Validation.

One project copy on a real-faces archive (data.source=local); for each variant the recipe's training
(`dvc repro train`, train.recipe set) with one augmentation switched on at --probability, then the
trained model scores the Validation records as stored, and a corrupted copy of them: every image
gets one of JPEG re-compression at quality 70, a 0.7x downscale and upscale, a Gaussian blur
(sigma 0.8), or a brightness/contrast shift, in turn. Test is not looked at.
Usage: python benchmarks/augmentations.py --archive ../shared/data/faces140k-sample.zip
         [--recipe pristine_faces] [--probability 0.5] [--seeds 42]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from harness import ROOT, dvc, emit, make_project, set_params, timed

from deepfake_detector.core import paths

VARIANTS = {"none": {}, "jpeg": {"jpeg_probability": None}, "blur": {"blur_probability": None},
            "colour": {"colour_probability": None}, "rescale": {"rescale_probability": None},
            "cutout": {"cutout_probability": None}}


def corrupt(images: np.ndarray) -> np.ndarray:
    out = []
    for i, image in enumerate(images):
        kind = i % 4
        if kind == 0:
            ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
        elif kind == 1:
            side = image.shape[0]
            small = cv2.resize(image, (int(side * 0.7),) * 2, interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
        elif kind == 2:
            image = cv2.GaussianBlur(image, (0, 0), 0.8)
        else:
            image = np.clip(image.astype(np.float32) * 0.9 + 15, 0, 255).astype(np.uint8)
        out.append(image)
    return np.stack(out)


def validation_images(project: Path, size: int):
    from deepfake_detector.data import records

    folder = project / paths.PROCESSED
    catalog = records.load_catalog(folder)
    resize = size if size != catalog["image_size"] else None
    pairs = [(x.numpy(), float(y)) for x, y, _ in records.decoded_dataset(
        records.split_files(folder, catalog, "validation"), resize)]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--recipe", default="pristine_faces")
    parser.add_argument("--probability", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score

    from deepfake_detector.model import inference

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project")
        (project / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        set_params(project, {"data.source": "local", "data.local_path": str(args.archive.resolve()),
                             "train.recipe": args.recipe})
        dvc("repro", "preprocess", cwd=project)
        base = f"train.recipes.{args.recipe}.augment." if args.recipe != "default" else "train.augment."
        for name, keys in VARIANTS.items():
            runs = []
            for seed in args.seeds:
                changes = {base + key: 0.0 for key in ("jpeg_probability", "blur_probability",
                                                        "colour_probability", "rescale_probability",
                                                        "cutout_probability")}
                changes.update({base + key: args.probability for key in keys})
                set_params(project, {**changes, "train.seed": seed})
                print(f"{name}, seed {seed}...", file=sys.stderr)
                timed([str(Path(sys.executable).parent / "dvc"), "repro", "train"], cwd=project)
                scorer = inference.Scorer.load(project / paths.MODEL)
                images, labels = validation_images(project, scorer.image_size)
                runs.append({"seed": seed,
                             "validation_roc_auc": round(roc_auc_score(labels, scorer.score(images)), 4),
                             "corrupted_validation_roc_auc": round(
                                 roc_auc_score(labels, scorer.score(corrupt(images))), 4)})
                print(json.dumps(runs[-1]), file=sys.stderr)
            results[name] = ({key: round(float(np.mean([r[key] for r in runs])), 4)
                              for key in ("validation_roc_auc", "corrupted_validation_roc_auc")}
                             | {"runs": runs})
    emit({"recipe": args.recipe, "probability": args.probability, "results": results})


if __name__ == "__main__":
    main()
