"""`deepfake-detector export`: each format written, loaded back by its own runtime (as a user's
server or phone would load it) under the documented input and output names, and scoring as the
Keras model does within the stated tolerance, also on images the export's own check never saw."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from projectcopy import project_env
from trained import run_cli

from deepfake_detector.apps import export
from deepfake_detector.model import inference
from deepfake_detector.core.files import read_json

def documented_names(fmt: str, path) -> tuple[list[str], list[str]]:
    """(input names, output names) of the export, as its runtime reports them."""
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return list(serve.structured_input_signature[1]), list(serve.structured_outputs)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    # TFLite: as docs/usage.md says, the names are the serving_default signature's (the raw tensors are
    # serving_default_image:0 and StatefulPartitionedCall*:0)
    runner = tflite_interpreter(path).get_signature_runner("serving_default")
    return list(runner.get_input_details()), list(runner.get_output_details())


def tflite_interpreter(path):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_each_export_loads_in_its_runtime_and_scores_as_keras_does(trained, media, tmp_path, fmt):
    output = tmp_path / f"model.{fmt}"
    code, _, err = run_cli(trained, "export", "--format", fmt, "--output", str(output), "--check-count", "24")
    assert code == 0, err
    assert f"wrote {output}" in err and "24 Validation records" in err
    report = read_json(output / "assets.extra" / export.META_FILE if fmt == "savedmodel"
                       else f"{output}.json")
    assert report["check"]["images"] == 24 and report["check"]["tolerance"] == export.TOLERANCE[fmt]
    assert report["check"]["max_abs_difference"] <= export.TOLERANCE[fmt]
    scorer = inference.Scorer.load(trained / "models/model.keras")
    assert report["image_size"] == scorer.image_size and report["class_names"] == ["Real", "Fake"]
    assert report["threshold"] == read_json(trained / "models/model.keras.threshold.json")["threshold"]
    # F9: the whole input contract travels with the export (PIL's bilinear resize moved scores by 0.82)
    contract = report["preprocessing"]
    assert contract["resize"]["method"] == "area" and contract["size"] == [scorer.image_size] * 2
    assert contract["crop"]["rule"] == "face_square" and contract["crop"]["margin"] == 0.25
    assert contract["inference"] == "whole_image" and contract["range"] == [0, 255]
    if fmt == "onnx":  # the batch dimension has a name, not tf2onnx's unk__N
        import onnx

        graph = onnx.load(str(output)).graph
        assert [v.type.tensor_type.shape.dim[0].dim_param
                for v in (*graph.input, *graph.output)] == ["n", "n"]
    if fmt == "tflite":  # docs/usage.md's call, and its raw tensor names
        assert report["tflite"]["signature"] == "serving_default"
        assert report["tflite"]["call"] == "interpreter.get_signature_runner()(image=batch)['p_fake']"
        interpreter = tflite_interpreter(output)
        assert interpreter.get_input_details()[0]["name"] == "serving_default_image:0"
        assert interpreter.get_output_details()[0]["name"].startswith("StatefulPartitionedCall")
        batch = np.zeros((2, scorer.image_size, scorer.image_size, 3), np.float32)
        np.testing.assert_allclose(interpreter.get_signature_runner()(image=batch)["p_fake"],
                                   scorer.score(batch.astype(np.uint8)), rtol=0, atol=export.TOLERANCE[fmt])

    # images the check never saw: a face crop and its variations, scored by the runtime directly
    images = np.stack([inference.crops(inference.decode(media["face"].read_bytes()), None, 0.0,
                                       scorer.image_size)[0].pixels] * 4)
    images[1:] = np.random.default_rng(0).integers(0, 256, images[1:].shape, dtype=np.uint8)
    keras_scores = scorer.score(images)
    assert np.ptp(keras_scores) > 1e-4  # different images, different scores: the match means something
    got = export.runtime(fmt, output)(images.astype(np.float32))
    np.testing.assert_allclose(got, keras_scores, rtol=0, atol=export.TOLERANCE[fmt])
    assert documented_names(fmt, output) == (["image"], ["p_fake"])
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.slow
def test_an_export_over_its_tolerance_is_refused_and_not_written(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(export.TOLERANCE, "tflite", 0.0)  # float16 weights move scores a little
    output = tmp_path / "model.tflite"
    code, _, err = run_cli(trained, "export", "--format", "tflite", "--output", str(output),
                           "--check-count", "8")
    assert code == 2 and err.count("\n") == 1 and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_check_images_from_a_folder_and_a_folder_without_any(trained, media, tmp_path):
    output = tmp_path / "out" / "model.onnx"
    code, _, err = run_cli(trained, "export", "--format", "onnx", "--output", str(output), "--check-images",
                           str(media["face"]), str(media["no_face"]))
    assert code == 0 and "2 images from" in err and read_json(f"{output}.json")["check"]["images"] == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    code, _, err = run_cli(trained, "export", "--format", "onnx", "--output", str(output), "--check-images",
                           str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1 and "no readable image" in err


def test_onnx_without_its_packages_says_how_to_install_them_in_one_line(tmp_path):
    """tf2onnx serves here; where it doesn't install, the command must say so (simulated by hiding
    the package from the import system in a fresh process)."""
    code = ("import sys; sys.modules['tf2onnx'] = None\n"
            "from deepfake_detector.apps import cli; cli.main(['export', '--format', 'onnx'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=project_env(), timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "needs tf2onnx and onnxruntime" in done.stderr and "pip install tf2onnx==" in done.stderr


def test_watch_and_export_have_help(tmp_path):
    for command in ("watch", "export"):
        code, out, _ = run_cli(tmp_path, command, "--help")
        assert code == 0 and f"usage: deepfake-detector {command}" in out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_a_model_of_counted_features_exports_in_every_format(trained, native_model, tmp_path, fmt):
    """F7/F8: rich_dct (the pristine_faces recipe's model) crashed in ONNX (its standardisation's
    statistics were left as inputs to feed) and TFLite (no Bincount op). Now every format is written
    and checked; its sidecar says the model takes un-resized crops."""
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        import cv2

        cv2.imwrite(str(crops / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    output = tmp_path / "out" / f"rich.{fmt}"
    code, _, err = run_cli(trained, "export", "--format", fmt, "--model", str(native_model), "--output",
                           str(output), "--check-images", str(crops))
    assert code == 0 and "Traceback" not in err, err
    report = read_json(output / "assets.extra" / export.META_FILE if fmt == "savedmodel"
                       else f"{output}.json")
    assert report["check"]["images"] == 6
    assert report["check"]["max_abs_difference"] <= report["check"]["tolerance"] <= export.COUNTING_TOLERANCE
    assert report["preprocessing"]["resize"]["method"] == "never"
    assert report["preprocessing"]["crop"]["rule"] == "as_is"
    assert documented_names(fmt, output) == (["image"], ["p_fake"])


def test_the_exported_trace_counts_exactly_as_training_does(media):
    """F8: export traces ``frequencies`` with an unsorted segment sum (TFLite and ONNX have no
    Bincount): every feature of a rich_dct model, on a real face crop and on noise, is bit-identical
    to the bincount's."""
    import keras
    import tensorflow as tf

    from deepfake_detector.model import builders as models
    from deepfake_detector.model import richmodel

    model = models.build("rich_dct", 64)
    features = keras.Model(model.input, model.get_layer("fixed_features").output)
    face = inference.crops(inference.decode(media["face"].read_bytes()), None, 0.0, 64)[0].pixels
    images = np.stack([face, *np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)])
    images = tf.constant(images.astype(np.float32))
    counted = tf.function(lambda x: features(x))(images).numpy()
    with richmodel.exportable():
        exported = tf.function(lambda x: features(x))
        graph = exported.get_concrete_function(images).graph.as_graph_def()
    assert not [n for n in graph.node if "Bincount" in n.op]  # traced inside the context: no Bincount
    assert [n for n in (tf.function(lambda x: features(x)).get_concrete_function(images)
                        .graph.as_graph_def().node)
            if "Bincount" in n.op]  # and outside it, training's trace keeps it
    assert counted.any() and np.array_equal(exported(images).numpy(), counted)


def test_a_savedmodel_export_logs_no_temp_path(native_model, tmp_path, caplog, capfd):
    """TensorFlow's INFO "Assets written to: models/.model.savedmodel.<random>/assets" named the temp
    folder; a caller who logs TensorFlow at INFO sees nothing of it now, and keeps its level."""
    import logging

    scorer = inference.Scorer.load(native_model)
    caplog.set_level(logging.INFO, logger="tensorflow")
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    export.export(scorer, "savedmodel", tmp_path / "rich.savedmodel", images)
    said = "\n".join(r.getMessage() for r in caplog.records) + "".join(capfd.readouterr())
    assert "Assets written" not in said and ".rich.savedmodel." not in said, said
    assert logging.getLogger("tensorflow").level == logging.INFO


def test_a_model_tflite_cannot_convert_is_one_line_naming_the_op(tmp_path):
    """TFLite has no ResizeArea (rich_dct_vgg16 avoids it with an exact average pool); a model that
    still has an op TFLite lacks gets one line naming it and the formats that work, not MLIR's dump
    of the graph."""
    import keras

    from deepfake_detector.core.errors import UserError
    from deepfake_detector.model import modelfile

    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Resizing(20, 20, interpolation="area")(inputs)  # 32 → 20: no whole-number pool
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p_fake")(x))
    modelfile.save(model, tmp_path / "m.keras", modelfile.ModelMeta(image_size=32))
    scorer = inference.Scorer.load(tmp_path / "m.keras")
    with pytest.raises(UserError) as caught:
        export._tflite(scorer, tmp_path / "m.tflite")
    message = str(caught.value)
    assert "TFLite has no ResizeArea op" in message and "--format savedmodel" in message
    assert str(tmp_path / "m.keras") in message and "\n" not in message
    assert not (tmp_path / "m.tflite").exists()
