"""``deepfake-detector export``: the trained model for other runtimes, each checked against Keras.

* ``savedmodel``: a TensorFlow SavedModel for TF Serving, signature ``serving_default``:
  ``image`` float32 [n, s, s, 3], RGB in [0, 255] (the model's input rule) → ``p_fake`` float32 [n].
* ``tflite``: the same function converted to TensorFlow Lite with float16 weights (half the size;
  computed in float32 on CPUs).
* ``onnx``: converted by ``tf2onnx`` (opset ``ONNX_OPSET``), same input and output names.

Every export is written to a temp path, loaded back by its own runtime (``tf.saved_model.load``,
``tf.lite.Interpreter``, ``onnxruntime``), and its P(fake) on the check images compared with the
Keras model's (``Scorer.score``): over ``TOLERANCE`` the export is refused and nothing is written.
What scoring needs beside the file (image size, class names, threshold) goes into
``deepfake_detector.json``: inside a SavedModel's ``assets.extra/``, else beside the file as
``<output>.json``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from deepfake_detector import __version__
from deepfake_detector.apps import faces
from deepfake_detector.core.errors import UserError
from deepfake_detector.core.files import atomic_path, replace_dir, write_json
from deepfake_detector.model.inference import Scorer, read_threshold

FORMATS = ("savedmodel", "tflite", "onnx")
SUFFIXES = {"savedmodel": ".savedmodel", "tflite": ".tflite", "onnx": ".onnx"}
# Largest |P(fake) export - P(fake) Keras| accepted on the check images. float32 runtimes differ
# from TensorFlow only in the order of their sums; float16 weights move scores by up to ~1e-3 on the
# shipped models (benchmarks/export_check.py measures it), hence the looser bound.
TOLERANCE = {"savedmodel": 1e-5, "tflite": 1e-2, "onnx": 1e-4}
# A model of counted features (rich_dct, residual_cooc: ``Scorer.native_only``) rounds filtered pixels
# into bins; another runtime's order of sums moves a value lying on a bin's edge into the next bin, so
# its scores move by up to ~3e-3 where a smooth model's move by 1e-6 (measured: ONNX 3.2e-3 on 6
# random images of a 64 px rich_dct). Its TFLite export keeps float32 weights: float16 ones moved its
# scores by up to 7.6e-3, on top.
COUNTING_TOLERANCE = 1e-2


def tolerance(fmt: str, scorer: Scorer) -> float:
    return (max(TOLERANCE[fmt], COUNTING_TOLERANCE) if scorer.native_only and fmt != "savedmodel"
            else TOLERANCE[fmt])
ONNX_OPSET = 17
ONNX_PACKAGES = "tf2onnx==1.17.0 onnxruntime==1.31.1"
META_FILE = "deepfake_detector.json"


def default_output(model_path: Path, fmt: str) -> Path:
    """``models/model.keras`` → ``models/model.savedmodel`` (a folder), ``.tflite``, ``.onnx``."""
    return Path(model_path).with_suffix(SUFFIXES[fmt])


def _serving_function(scorer: Scorer):
    import tensorflow as tf

    size = scorer.image_size
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="image")
    model = scorer.model
    return tf.function(lambda image: {"p_fake": tf.reshape(model(image, training=False), [-1])},
                       input_signature=[spec]), spec


def _savedmodel(scorer: Scorer, folder: Path) -> None:
    import keras

    serve, spec = _serving_function(scorer)
    archive = keras.export.ExportArchive()
    archive.track(scorer.model)
    archive.add_endpoint("serve", serve, input_signature=[spec])  # "serve" becomes serving_default
    with _quiet("tensorflow"):  # its INFO "Assets written to: <temp folder>" names a path we then move
        archive.write_out(str(folder), verbose=False)


@contextlib.contextmanager
def _quiet(*names: str, level: int = logging.WARNING):
    """These Python loggers at ``level`` or above for the block only (a caller's settings come back)."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, old in zip(loggers, saved):
            logger.setLevel(old)


def _tflite(scorer: Scorer, path: Path) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export.") as scratch:
        _savedmodel(scorer, Path(scratch) / "savedmodel")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "savedmodel"))
        if not scorer.native_only:  # float16 weights halve the file (see COUNTING_TOLERANCE for the others)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        try:
            flat = converter.convert()
        except Exception as exc:  # ConverterError: its text is MLIR's dump of the graph, hundreds of lines
            ops = re.search(r"Custom ops: ([^\n]+)", str(exc))
            missing = f" (TFLite has no {ops.group(1).strip()} op)" if ops else ""
            raise UserError(f"{scorer.path}: TFLite cannot convert this model{missing}; export it with "
                            "--format savedmodel or --format onnx") from None
        path.write_bytes(flat)


def require_onnx():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as exc:
        raise UserError(f"--format onnx needs tf2onnx and onnxruntime ({exc}); install them with "
                        f"`pip install {ONNX_PACKAGES}` (make install does)") from None
    return tf2onnx, onnxruntime


def _onnx(scorer: Scorer, path: Path) -> None:
    tf2onnx, _ = require_onnx()
    serve, spec = _serving_function(scorer)
    # Frozen first: layers such as Normalization keep their statistics as constant tensors captured by
    # the function, which from_function would leave as inputs the caller must feed.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # tf2onnx logs a traceback when one of its optional graph optimisers gives up; the model is fine.
    # It also calls TensorFlow's v1 freezing functions, which warn that they are deprecated.
    with _quiet("tf2onnx", "tensorflow", level=logging.ERROR):
        frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
        inputs = [t.name for t in frozen.inputs]
        outputs = [t.name for t in frozen.outputs]
        proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=inputs,
                                                  output_names=outputs, opset=ONNX_OPSET)
    _name_onnx(proto, {inputs[0]: "image", outputs[0]: "p_fake"})
    path.write_bytes(proto.SerializeToString())


def _name_onnx(proto, names: dict) -> None:
    """The graph's input and output under the documented names, the batch dimension named ``n``
    (tf2onnx leaves the tensors' graph names, ``image:0``, and ``unk__949`` dimensions)."""
    graph = proto.graph
    for value in (*graph.input, *graph.output):
        value.name = names.get(value.name, value.name)
        value.type.tensor_type.shape.dim[0].dim_param = "n"
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]


WRITERS = {"savedmodel": _savedmodel, "tflite": _tflite, "onnx": _onnx}


def runtime(fmt: str, path: Path):
    """The export at ``path`` loaded once by its own runtime, as a server would hold it: a function
    float32 images [n, s, s, 3] → P(fake) [n] (float64), through the names ``image`` and ``p_fake``."""
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda images: serve(image=tf.constant(images))["p_fake"].numpy().astype(float)
    if fmt == "tflite":
        import tensorflow as tf

        with warnings.catch_warnings():  # its deprecation notice: it still ships with, and serves, TF 2.21
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=str(path))
        given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        shape: list = [None]

        def run(images: np.ndarray) -> np.ndarray:
            if shape[0] != images.shape:  # a new batch size: the interpreter's buffers are resized
                interpreter.resize_tensor_input(given["index"], list(images.shape))
                interpreter.allocate_tensors()
                shape[0] = images.shape
            interpreter.set_tensor(given["index"], images)
            interpreter.invoke()
            return interpreter.get_tensor(taken["index"]).reshape(-1).astype(float)
        return run
    _, onnxruntime = require_onnx()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(["p_fake"], {"image": images})[0].reshape(-1).astype(float)


def export(scorer: Scorer, fmt: str, output: Path, check_images: np.ndarray) -> dict:
    """Write ``scorer``'s model as ``fmt`` to ``output`` (atomically) once its scores on
    ``check_images`` (uint8 [n, s, s, 3]) match Keras within ``TOLERANCE[fmt]``; returns the report."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    output = Path(output)
    expected = scorer.score(check_images)
    try:
        threshold = read_threshold(scorer)
    except UserError:
        threshold = None  # exported all the same; the metadata says it is unknown
    written = scorer.meta.to_json()
    meta = {**{k: written.get(k) for k in ("class_names", "positive_class", "score", "image_size", "model")},
            "input": {"name": "image", "dtype": "float32",
                      "shape": [None, scorer.image_size, scorer.image_size, 3], "range": "RGB in [0, 255]"},
            "output": {"name": "p_fake", "dtype": "float32", "shape": [None]},
            # the whole input contract: how a picture becomes `image` (crop, resize, rule), as predict does it
            "preprocessing": faces.input_contract(scorer),
            "format": fmt, "source_model": str(scorer.path), "source_model_sha256": scorer.sha256,
            "threshold": threshold, "exported_by": f"deepfake-detector {__version__}"}
    if fmt == "tflite":  # the converter names the raw tensors after the graph; the signature keeps ours
        meta["tflite"] = {"signature": "serving_default", "call": "interpreter.get_signature_runner()"
                          "(image=batch)['p_fake']",
                          "tensors": "serving_default_image:0 in, StatefulPartitionedCall*:0 out"}
    output.parent.mkdir(parents=True, exist_ok=True)
    from deepfake_detector.model import richmodel

    with richmodel.exportable():  # every trace below uses ops each runtime has
        return _write(scorer, fmt, output, check_images, expected, meta)


def _write(scorer: Scorer, fmt: str, output: Path, check_images: np.ndarray, expected: np.ndarray,
           meta: dict) -> dict:
    if fmt == "savedmodel":
        scratch = output.parent / f".{output.name}.{secrets.token_hex(4)}"
        scratch.mkdir()  # the umask's mode, as a plain folder gets (mkdtemp's is 0700)
        try:
            WRITERS[fmt](scorer, scratch)
            report = _check(fmt, scratch, check_images, expected, meta, tolerance(fmt, scorer))
            write_json(scratch / "assets.extra" / META_FILE, report)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        replace_dir(scratch, output)
    else:
        with atomic_path(output, suffix=SUFFIXES[fmt]) as tmp:
            WRITERS[fmt](scorer, tmp)
            report = _check(fmt, tmp, check_images, expected, meta, tolerance(fmt, scorer))
            write_json(Path(f"{output}.json"), report)
    return report


def _check(fmt: str, path: Path, images: np.ndarray, expected: np.ndarray, meta: dict,
           allowed: float) -> dict:
    from deepfake_detector.core.entrypoint import filtered_stderr

    with filtered_stderr():  # TFLite's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line
        got = runtime(fmt, path)(images.astype(np.float32))
    difference = float(np.max(np.abs(got - expected)))
    check = {"images": len(images), "max_abs_difference": difference, "tolerance": allowed}
    if meta["threshold"] is not None:
        check["labels_agree"] = float(np.mean((got >= meta["threshold"]) == (expected >= meta["threshold"])))
    if not difference <= allowed:
        raise UserError(f"the {fmt} export scores differ from the Keras model's by up to {difference:.2g} on "
                        f"{len(images)} images (tolerance {allowed:g}); nothing was written: report it")
    return {**meta, "size_bytes": _size(path), "check": check}


def check_images(scorer: Scorer, paths: list[Path] | None, count: int,
                 processed: Path) -> tuple[np.ndarray, str]:
    """Up to ``count`` model-sized uint8 images to check an export on, and where they came from:
    the images under ``paths`` (scored whole, as ``predict --no-detect`` scores them; unreadable
    ones skipped), else the first Validation records of ``processed`` (a mix of both classes)."""
    from deepfake_detector.model.inference import Unreadable, crops, decode

    if paths:
        from deepfake_detector.apps.predict import expand

        found = []
        for path in expand(paths):
            try:
                found.append(crops(decode(path.read_bytes()), None, 0.0, scorer.image_size)[0].pixels)
            except (Unreadable, OSError):
                continue
            if len(found) == count:
                break
        if not found:
            raise UserError(f"no readable image in {', '.join(map(str, paths))} to check the export on")
        return np.stack(found), f"{len(found)} images from {', '.join(map(str, paths))}"
    from deepfake_detector.data import records

    try:
        catalog = records.load_catalog(processed)
    except UserError:
        raise UserError(f"no images to check the export on: {processed} has no records; pass "
                        "--check-images DIR (a folder of face crops) or run `dvc repro preprocess`") from None
    resize_to = scorer.image_size if scorer.image_size != catalog["image_size"] else None
    data = records.decoded_dataset(records.split_files(processed, catalog, "validation"), resize_to)
    found = [image.numpy() for image, _, _ in data.take(count)]
    return np.stack(found), f"the first {len(found)} Validation records of {processed}"


def _size(path: Path) -> int:
    return (sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir()
            else path.stat().st_size)
