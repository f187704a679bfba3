"""Device set-up: mixed precision forced on a CPU, machine facts, quiet TensorFlow start-up, strategies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from projectcopy import ROOT, project_env

tf = pytest.importorskip("tensorflow")
import keras

from deepfake_detector.training import devices, distribute
from deepfake_detector.model import modelfile
from deepfake_detector.model import builders as models


@pytest.fixture
def mixed_precision():
    assert devices.use_mixed_precision("on")
    yield
    devices.use_mixed_precision("off")
    keras.backend.clear_session()  # layer-name counters back: later tests look layers up by name


def test_mixed_precision_forced_on_trains_finite_and_outputs_float32(mixed_precision, tmp_path):
    """The GPU path, checked on a CPU: float16 layers, a float32 output, Keras' loss scaling, a model
    file that saves and loads."""
    keras.utils.set_random_seed(0)
    model = models.build("compact_cnn", 32)
    assert model.layers[2].compute_dtype == "float16"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 1] * 4, np.float32)
    history = model.fit(images, labels, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    scores = model.predict_on_batch(images)
    assert scores.dtype == np.float32 and model.output.dtype == "float32"
    modelfile.save(model, tmp_path / "model.keras", modelfile.ModelMeta(image_size=32))
    loaded, _ = modelfile.load(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(images), scores, rtol=1e-3, atol=1e-3)


def test_machine_facts_name_what_decides_the_numbers():
    facts = devices.machine_facts(True)
    assert facts["tensorflow"] == tf.__version__ and facts["deterministic"] is True
    assert isinstance(facts["onednn"], bool)
    assert facts["cpu_isa"] in ("avx512_fp16", "avx512_bf16", "avx512_vnni", "avx512", "avx2", "avx",
                                "sse4_2", "baseline", "unknown")


def test_tensorflow_starts_without_cuda_noise_on_a_cpu():
    code = ("from deepfake_detector.training import devices; devices.load_tensorflow(); "
            "print(devices.device_name())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=project_env(TF_CPP_MIN_LOG_LEVEL="0"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CPU"
    assert result.stderr.strip() == "", result.stderr


def test_strategy_choices_on_a_cpu():
    assert distribute.describe(distribute.strategy("none")) == ""
    assert distribute.describe(distribute.strategy("auto")) == ""  # no GPU here
    from deepfake_detector.core.errors import ParamError

    with pytest.raises(ParamError, match="needs the TF_CONFIG environment variable"):
        distribute.strategy("multi_worker")  # no TF_CONFIG here
