"""Training-ready records: TFRecord shards per split, written by preprocess and read back by tf.data.

Each record holds the stored image bytes (the original JPEG, or a lossless PNG when preprocess had to
convert it), the label (Real = 0, Fake = 1) and the image's row in ``manifest.csv``. ``records.json``
beside the shards lists them with their counts, so readers know sizes without scanning.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from . import SPLITS
from .files import read_json

INDEX_FILE = "records.json"
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "index": tf.io.FixedLenFeature([], tf.int64),
}


def encode(image: bytes, label: int, index: int) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Writes one split's records into shards of at most ``shard_images`` records each."""

    def __init__(self, folder: Path, split: str, shard_images: int):
        self.folder, self.split, self.shard_images = Path(folder), split, shard_images
        self.shards: list[dict] = []  # {"file", "records", "real", "fake"}
        self._writer = None

    def write(self, image: bytes, label: int, index: int) -> None:
        if self._writer is None or self.shards[-1]["records"] >= self.shard_images:
            self._open_next()
        self._writer.write(encode(image, label, index))
        shard = self.shards[-1]
        shard["records"] += 1
        shard["fake" if label else "real"] += 1

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.shards):05d}.tfrecord"
        self._writer = tf.io.TFRecordWriter(str(self.folder / name))
        self.shards.append({"file": name, "records": 0, "real": 0, "fake": 0})

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def filter_shards(folder: Path, shards: list[dict], drop_indices: set[int]) -> list[dict]:
    """Rewrite shards without the records whose manifest index is in ``drop_indices`` (no decoding)."""
    kept = []
    for shard in shards:
        path = folder / shard["file"]
        tmp = path.with_suffix(".filtering")
        counts = {"file": shard["file"], "records": 0, "real": 0, "fake": 0}
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for raw in tf.data.TFRecordDataset(str(path)):
                parsed = tf.io.parse_single_example(raw, _FEATURES)
                if int(parsed["index"]) in drop_indices:
                    continue
                writer.write(raw.numpy())
                counts["records"] += 1
                counts["fake" if int(parsed["label"]) else "real"] += 1
        os.replace(tmp, path)
        kept.append(counts)
    return kept


def load_index(folder: str | os.PathLike) -> dict:
    """``records.json``: {"image_size": n, "splits": {split: {"shards": [...], "records": n, ...}}}."""
    path = Path(folder) / INDEX_FILE
    if not path.exists():
        from .errors import DataError

        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    return read_json(path)


def split_files(folder: str | os.PathLike, index: dict, split: str) -> list[str]:
    if split not in SPLITS:
        raise KeyError(split)
    return [str(Path(folder) / shard["file"]) for shard in index["splits"][split]["shards"]]


def decoded_dataset(files: list[str], resize_to: int | None = None) -> tf.data.Dataset:
    """(uint8 image [h, w, 3], label float32, manifest index) in file order, decoded in parallel.

    ``resize_to`` is set when the model's input size differs from the stored size; the resize (area:
    an honest average, no aliasing) happens here, so a cache after this holds model-sized images.
    """

    def parse(raw):
        example = tf.io.parse_single_example(raw, _FEATURES)
        image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        if resize_to:
            image = tf.image.resize(image, (resize_to, resize_to), method="area")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, tf.cast(example["label"], tf.float32), example["index"]

    files_ds = tf.data.Dataset.from_tensor_slices(files)
    records = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(4, len(files))),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
