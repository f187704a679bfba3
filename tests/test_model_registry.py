"""The model registry: every catalog entry has exactly one registered builder, the names a user can
choose are those (params validation, the params.yaml comment), and every builder keeps the contract:
RGB float32 in [0, 255] at any batch size → one float32 P(fake) in [0, 1]."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from deepfake_detector.core import params
from deepfake_detector.model import builders, catalog

ROOT = Path(__file__).resolve().parents[1]
SLOW = ("efficientnet_b0", "xception")  # several seconds each to build on 2 cores


def test_every_catalog_entry_has_one_registered_builder():
    assert list(builders.BUILDERS) == list(catalog.MODELS)
    assert params.SCHEMA["train"]["model"].choices == tuple(catalog.MODELS)


def test_the_params_yaml_comment_names_every_registered_model():
    text = (ROOT / "params.yaml").read_text()
    block = text[text.index("  model: "):text.index("  weights: ")]
    named = re.findall(r"\b([a-z][a-z0-9_]*)\b", block.split("#", 1)[1])
    assert set(catalog.MODELS) <= set(named), set(catalog.MODELS) - set(named)


def test_a_builder_without_a_catalog_entry_fails_at_registration():
    def not_in_the_catalog(inputs, weights):
        return inputs

    with pytest.raises(RuntimeError, match="no entry in .*catalog.py"):
        builders.register_model(not_in_the_catalog)
    with pytest.raises(RuntimeError, match="registered twice"):
        builders.register_model(builders.BUILDERS["compact_cnn"])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in catalog.MODELS])
def test_every_registered_model_maps_raw_rgb_to_one_probability(name):
    size = 72  # xception takes no less than 71x71
    model = builders.build(name, size)
    assert model.name == name and model.input_shape == (None, size, size, 3)
    images = np.random.default_rng(0).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    scores = model.predict_on_batch(images)
    assert scores.shape == (3, 1) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(model.predict_on_batch(images[:1]), scores[:1], rtol=1e-4, atol=1e-6)
