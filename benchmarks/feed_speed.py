"""How fast training's input pipeline feeds images, against Keras' own folder loader on the same images.

    python benchmarks/feed_speed.py [--images 4000] [--image-size 128] [--epochs 3]

No model: each epoch is one pass over the training split, images only. Per round, interleaved:

* ``cached``: ``feed.train_dataset`` as training builds it (records decoded, resized, cached in
  RAM, shuffled into batches, augmented batch by batch, prefetched), with the whole split in the cache budget;
* ``cached_without_augmentation``: the same without flips, JPEG re-compression and blur, to show what
  the augmentation (run on every image every epoch, after the cache) costs;
* ``cached_jpeg_only``: the same with JPEG re-compression alone (at the shipped probability): the
  floor that one op's encode and decode put under the augmented feed's time;
* ``streamed``: the same with a cache budget of 0 (the rate when the data does not fit the budget:
  every epoch decodes every record again);
* ``reference``: ``keras.utils.image_dataset_from_directory`` on the same images as JPEG files in
  Real/ and Fake/ folders, at the same size and batch size (it decodes and resizes every epoch).

Steady state: a first epoch of each is run outside the timing (tracing, the cache filling), then
``--epochs`` rounds. ``ratio`` (cached ÷ reference, median of per-round ratios) is the figure to compare
across machines; goal ≥ 20. Every epoch is checked to deliver exactly the training split's images.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from harness import alternate, check, dvc, emit, machine, make_project, ratio_to

from deepfake_detector import CLASS_NAMES
from deepfake_detector.core import paths


def epoch(dataset, expected: int, what: str) -> int:
    """One pass; the number of images it delivered (checked against ``expected``)."""
    count = 0
    for batch in dataset:
        count += int(batch[0].shape[0])
    check(what, {"images": count}, {"images": expected})
    return count


def train_folder(archive: Path, dest: Path) -> int:
    """The archive's Train images as files in dest/Real and dest/Fake (Keras' folder layout)."""
    count = 0
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == "Train" and parts[2] in CLASS_NAMES and parts[3]:
                (dest / parts[2]).mkdir(parents=True, exist_ok=True)
                (dest / parts[2] / parts[3]).write_bytes(bundle.read(name))
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000, help="training images (sample data)")
    parser.add_argument("--image-size", type=int, default=128, help="model input size (stored: 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each, after a warm one")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (a steady state needs more than one)")
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "project", {
            "data.source": "sample", "data.local_path": None, "data.sample.image_size": 256,
            "data.sample.train": args.images, "data.sample.validation": 100, "data.sample.test": 100,
            "preprocess.image_size": 256, "preprocess.shard_images": 4096,
            "train.image_size": args.image_size, "train.batch_size": args.batch_size})
        dvc("repro", "preprocess", cwd=project)
        folder = Path(tmp) / "train_images"
        files = train_folder(project / paths.ARCHIVE, folder)
        check("the training images as files", {"images": files}, {"images": args.images})
        sys.path.insert(0, str(project))  # the project copy's library and params
        import keras

        from deepfake_detector.core import params
        from deepfake_detector.data import records
        from deepfake_detector.training import feed

        train = params.load_section("train", project / "params.yaml")
        processed = project / paths.PROCESSED
        catalog = records.load_catalog(processed)
        records_n = catalog["splits"]["train"]["records"]
        check("the training records", {"images": records_n}, {"images": args.images})

        def ours(cache_images: int, augment=train.augment):
            data, cached = feed.train_dataset(processed, catalog, train.image_size, train.batch_size,
                                                  cache_images, augment, train.seed)
            check("the cache", {"cached": cached}, {"cached": min(cache_images, records_n) and records_n})
            return data

        no_augment = SimpleNamespace(**{**vars(train.augment), "flip": False, "jpeg_probability": 0,
                                        "blur_probability": 0})
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints "Found N files" on stdout
            reference = keras.utils.image_dataset_from_directory(
                folder, labels="inferred", label_mode="binary", class_names=list(CLASS_NAMES),
                image_size=(train.image_size, train.image_size), batch_size=train.batch_size,
                shuffle=True, seed=train.seed).prefetch(-1)
        jpeg_only = SimpleNamespace(**{**vars(no_augment),
                                       "jpeg_probability": train.augment.jpeg_probability})
        feeds = {"cached": ours(10**9), "cached_without_augmentation": ours(10**9, no_augment),
                 "cached_jpeg_only": ours(10**9, jpeg_only),
                 "streamed": ours(0), "reference": reference}
        for name, data in feeds.items():  # warm-up epoch: tracing, and the cache filling
            epoch(data, args.images, f"{name} warm-up epoch")
        runs = alternate({name: (lambda d=data, n=name: epoch(d, args.images, f"{n} epoch"))
                          for name, data in feeds.items()}, args.epochs)
    reference_name = "keras.utils.image_dataset_from_directory, same images, size and batch"
    emit({"images": args.images, "image_size": args.image_size, "batch_size": args.batch_size,
          "ratio_goal": 20, "machine": machine(),
          **{name: ratio_to(runs["reference"], runs[name], reference_name)
             for name in ("cached", "cached_without_augmentation", "cached_jpeg_only", "streamed")},
          "rounds": runs})


if __name__ == "__main__":
    main()
