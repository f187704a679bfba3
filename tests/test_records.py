"""records.py's own TFRecord writer, read back by TensorFlow's parser."""

from __future__ import annotations

import os

import pytest

from deepfake_detector.data import records


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 14000, 2**20 + 5])
@pytest.mark.parametrize("label, index", [(0, 0), (1, 127), (1, 128), (0, 190_000), (1, 2**40)])
def test_records_parse_as_the_examples_they_claim(size, label, index, tmp_path):
    """Lengths and varints across their byte boundaries: TensorFlow reads back image, label, index."""
    import tensorflow as tf

    image = os.urandom(size)
    path = tmp_path / "one.tfrecord"
    path.write_bytes(records.frame(records.encode(image, label, index)))
    raw = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert len(raw) == 1
    example = tf.train.Example.FromString(raw[0])
    feature = example.features.feature
    assert set(feature) == {"image", "label", "index"}
    assert feature["image"].bytes_list.value == [image]
    assert feature["label"].int64_list.value == [label]
    assert feature["index"].int64_list.value == [index]
