"""Training-ready records: TFRecord shards per split, written by preprocess and read back by tf.data.

Each record is a ``tf.train.Example`` holding the stored image bytes (the original JPEG, or a lossless
PNG when preprocess had to convert it), the label (Real = 0, Fake = 1) and ``index``, the image's row
in ``manifest.csv``. The catalog, ``records.json`` beside the shards, lists each split's shards with
their counts.

Writing needs no TensorFlow: the Example protobuf and the TFRecord framing (length, masked CRC-32C)
are a few bytes of format, encoded here. Preprocess would import TensorFlow for nothing else, and the
import costs more than the whole stage does on the sample data (several seconds and ~650 MB in the
main process), while per record the two writers cost the same; on the full Kaggle dataset it would be
a few per cent (``benchmarks/tfrecord_writing.py``). Tests read these records back with TensorFlow's
own parser. Reading is tf.data's (TensorFlow is imported only there).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import google_crc32c

from deepfake_detector import SPLITS
from deepfake_detector.core.errors import DataError
from deepfake_detector.core.files import read_json
from deepfake_detector.core.paths import CATALOG_FILE
from deepfake_detector.data.pixels import decode_image, resize_image


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((v,)) for v in range(0x80)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(key: str, feature: bytes) -> bytes:
    # Features.feature is map<string, Feature>: each entry is {1: key, 2: value} under field 1.
    return _field(1, _field(1, key.encode()) + _field(2, feature))


def _int64_feature(key: str, value: int) -> bytes:
    return _feature(key, _field(3, _field(1, _varint(value))))  # Feature.int64_list, packed


_IMAGE_KEY = _field(1, b"image")


def encode(image: bytes, label: int, index: int) -> bytes:
    """tf.train.Example{image: bytes_list, label: int64_list, index: int64_list}, serialized."""
    # The image feature's nested headers are built from the inside out and the image bytes are
    # copied once (nesting with _field would copy them at every level).
    rest = _int64_feature("label", label) + _int64_feature("index", index)
    heads, size = [], len(image)
    for number, before in ((1, b""), (1, b""), (2, _IMAGE_KEY), (1, b"")):
        # BytesList.value, Feature.bytes_list, the map entry's value (after its key), Features.feature
        head = before + _varint(number << 3 | 2) + _varint(size)
        heads.append(head)
        size += len(head)
    features = _varint(1 << 3 | 2) + _varint(size + len(rest))  # Example.features
    return b"".join((features, *reversed(heads), image, rest))


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(record: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC-32C, the data, its masked CRC-32C."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


def read_frames(path: str | os.PathLike):
    """The raw records of one shard file, in order (checked against their CRCs)."""
    with open(path, "rb") as handle:
        while header := handle.read(12):
            length = header[:8]
            if len(header) < 12 or _masked_crc(length) != header[8:]:
                raise DataError(f"{path}: corrupt TFRecord header; rerun `dvc repro preprocess`")
            record = handle.read(struct.unpack("<Q", length)[0])
            if _masked_crc(record) != handle.read(4):
                raise DataError(f"{path}: corrupt TFRecord data; rerun `dvc repro preprocess`")
            yield record


class ShardWriter:
    """Writes one split's records into shards of at most ``shard_images`` records each."""

    def __init__(self, folder: Path, split: str, shard_images: int):
        self.folder, self.split, self.shard_images = Path(folder), split, shard_images
        self.shards: list[dict] = []  # {"file", "records", "real", "fake"}
        self.indices: list[list[int]] = []  # manifest index of each record, per shard
        self._handle = None

    def write(self, image: bytes, label: int, index: int) -> None:
        if self._handle is None or self.shards[-1]["records"] >= self.shard_images:
            self._open_next()
        self._handle.write(frame(encode(image, label, index)))
        shard = self.shards[-1]
        shard["records"] += 1
        shard["fake" if label else "real"] += 1
        self.indices[-1].append(index)

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.shards):05d}.tfrecord"
        self._handle = open(self.folder / name, "wb")
        self.shards.append({"file": name, "records": 0, "real": 0, "fake": 0})
        self.indices.append([])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def drop(self, indices: set[int], labels) -> None:
        """Rewrite the shards without the records of ``indices`` (raw copy: nothing is decoded);
        ``labels[index]`` gives each record's label for the recount."""
        self.close()
        for shard, shard_indices in zip(self.shards, self.indices):
            if not indices.intersection(shard_indices):
                continue
            path = self.folder / shard["file"]
            tmp = path.with_suffix(".filtering")
            kept = []
            with open(tmp, "wb") as out:
                for record, index in zip(read_frames(path), shard_indices):
                    if index not in indices:
                        out.write(frame(record))
                        kept.append(index)
            os.replace(tmp, path)
            shard_indices[:] = kept
            shard["records"] = len(kept)
            shard["fake"] = sum(labels[i] for i in kept)
            shard["real"] = len(kept) - shard["fake"]


def load_catalog(folder: str | os.PathLike) -> dict:
    """The catalog, ``records.json``: {"image_size": n, "class_names": [...],
    "splits": {split: {"records": n, "real": n, "fake": n, "shards": [...]}}}."""
    path = Path(folder) / CATALOG_FILE
    if not path.exists():
        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    return read_json(path)


def split_files(folder: str | os.PathLike, catalog: dict, split: str) -> list[str]:
    if split not in SPLITS:
        raise KeyError(split)
    return [str(Path(folder) / shard["file"]) for shard in catalog["splits"][split]["shards"]]


def decoded_dataset(files: list[str], resize_to: int | None = None):
    """tf.data of (uint8 image [h, w, 3], label float32, manifest index) in file order.

    ``resize_to`` is set when the model's input size differs from the stored size; the resize
    happens here, so a cache after this holds model-sized images.
    """
    import tensorflow as tf

    features = {"image": tf.io.FixedLenFeature([], tf.string),
                "label": tf.io.FixedLenFeature([], tf.int64),
                "index": tf.io.FixedLenFeature([], tf.int64)}

    def parse(raw):
        example = tf.io.parse_single_example(raw, features)
        image = decode_image(example["image"])
        if resize_to:
            image = resize_image(image, resize_to)
        return image, tf.cast(example["label"], tf.float32), example["index"]

    files_ds = tf.data.Dataset.from_tensor_slices(files)
    records = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(4, len(files))),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
