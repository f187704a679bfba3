"""Fitting a detector: the model with its starting weights, the feed (``feed.py``), one or two
phases of ``model.fit`` under one early stopping, epoch checkpoints, dvclive, and the train metrics.

``fit`` reads as its steps: ``_feeds`` (training and validation data, or the fixed features they
give), ``_callbacks``, ``_run_phases`` (head alone, then the whole model) and ``_summary``.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

from deepfake_detector.training import devices

tf = devices.load_tensorflow()  # quietly: no CUDA-missing lines on a CPU
import keras
import numpy as np

from deepfake_detector.model import builders as models
from deepfake_detector.model import catalog as model_catalog
from deepfake_detector.training import checkpoints, distribute, feed

log = logging.getLogger(__name__)

# metrics/timing/train.json, not train.json
TIMING_KEYS = ("train_images_per_second", "wall_seconds", "host_cpu_isa")


class Throughput(keras.callbacks.Callback):
    """Training images per second per epoch, timed from epoch start to the last training batch
    (validation excluded). The first epoch also traces and fills the cache, so it is reported apart."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images = images_per_epoch
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(self.images / max(self._last - self._start, 1e-9))

    def steady_rate(self) -> float:
        if not self.rates:  # a resumed run that had no epoch left
            return 0.0
        return statistics.median(self.rates[1:] if len(self.rates) > 1 else self.rates)


def build_model(params, strategy=None) -> keras.Model:
    """The model to train, with its starting weights (ImageNet, or a file). The stage calls it before
    any data is read, so a missing weights file or an offline download fails first. Seeds and the
    precision policy are set here because the initial weights and the layers' dtypes depend on them."""
    devices.seed_everything(params.seed, params.deterministic)
    devices.use_mixed_precision(params.mixed_precision)
    size = None if params.patch_size else params.image_size  # patches and whole images alike
    with (strategy or tf.distribute.get_strategy()).scope():
        return models.build(params.model, size, params.weights)


def _on_fixed_features(model: keras.Model, layer_name: str, train_data, val_data, batch_size: int,
                       seed: int, strategy, passes: int = 1):
    """(the head after ``layer_name`` as its own model sharing ``model``'s layers, training and
    validation data as that layer's outputs, computed once). The extractor has no trainable weights,
    so training the head on stored features is the same as training the whole model. The training
    images go through ``passes`` times, each pass under a fresh draw of augmentation: for a
    fixed-feature model that is how it meets re-saved, resized or noisy copies (CNNDetection's
    lesson: robustness comes from training on what the model will meet)."""
    extractor = keras.Model(model.inputs, model.get_layer(layer_name).output)

    def extract(data):
        parts = [(extractor.predict_on_batch(images), labels.numpy()) for images, labels in data]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    started = time.perf_counter()
    drawn = [extract(train_data) for _ in range(passes)]  # each iteration redraws shuffle and augmentation
    train_x, train_y = np.concatenate([d[0] for d in drawn]), np.concatenate([d[1] for d in drawn])
    val_x, val_y = extract(val_data)
    log.info("train: fixed features of %d training rows (%d pass%s) and %d validation images in %.0f s",
             len(train_x), passes, "es" if passes > 1 else "", len(val_x), time.perf_counter() - started)
    inputs = x = keras.Input(train_x.shape[1:])
    after = False
    for layer in model.layers:
        if after:
            x = layer(x)
        after = after or layer.name == layer_name
    with strategy.scope():  # the head trains under the model's strategy (Keras takes it from the scope)
        head = keras.Model(inputs, x, name=f"{model.name}_head")
    from deepfake_detector.model import richmodel

    richmodel.standardise(head, train_x)
    train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(
        len(train_x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(batch_size)
    return head, train, val


def _compile(model: keras.Model, learning_rate, steps: int, alpha: float = 0.05) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1), alpha=alpha)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
                  # XLA slows CPU training 2-9x; on a GPU it is worth it.
                  jit_compile=bool(devices.gpus()))


class EpochLog(keras.callbacks.Callback):
    """One concise line per epoch (Keras' own progress output is off)."""

    def __init__(self, epochs: int, throughput: Throughput):
        super().__init__()
        self.epochs, self.throughput = epochs, throughput

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = " ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "auc", "val_loss", "val_auc") if k in logs)
        log.info("epoch %d/%d: %s, %.0f img/s", epoch + 1, self.epochs, shown, self.throughput.rates[-1])


class BestAcrossPhases(keras.callbacks.EarlyStopping):
    """Early stopping over several ``model.fit`` calls (the head alone, then the whole model): Keras
    resets the best weights and the patience count in ``on_train_begin``, so only the first call's
    does; the others carry on from where the last phase left them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._began = False

    def on_train_begin(self, logs=None):
        if not self._began:
            super().on_train_begin(logs)
            self._began = True


@dataclass
class _Feeds:
    model: keras.Model  # what model.fit trains: the whole model, or its head on fixed features
    train: tf.data.Dataset  # (float32 images, labels), repeated by the phases
    validation: tf.data.Dataset
    steps: int  # training batches per epoch
    images_per_epoch: int
    cached: int  # training images held in RAM


def fit(folder, catalog: dict, params, live_dir: str | None, model: keras.Model | None = None,
        strategy=None, checkpoint_dir=None, run_key: str = "") -> tuple[keras.Model, dict]:
    """Train ``params.model`` (or ``model``, from ``build_model`` under ``strategy``) on the records
    in ``folder``; returns (best model, train metrics). ``live_dir`` None: no dvclive.

    ``freeze_epochs`` > 0: those epochs train the head alone at ``learning_rate``, then the whole
    model trains for the rest at ``fine_tune_learning_rate``. Early stopping watches Validation
    ROC-AUC over both phases and keeps the best weights.

    With ``checkpoint_dir`` every epoch is backed up there under ``run_key`` and a run killed
    earlier resumes from its last finished epoch. The training data is one repeated dataset, so a
    resumed run skips the finished epochs' batches and sees exactly the batches (order and
    augmentation) that an uninterrupted run sees. Two-phase fine-tuning is not resumed (the optimizer
    changes between phases): with ``freeze_epochs`` > 0 a killed run starts again.
    """
    started = time.perf_counter()
    # first: multi-worker precedes other TF work
    strategy = strategy or distribute.strategy(params.distribute)
    if model is None:
        model = build_model(params, strategy)
    feeds = _feeds(folder, catalog, params, model, strategy)
    checkpoint_dir, initial_epoch, stopped = _resume_point(checkpoint_dir, params, run_key)
    throughput = Throughput(feeds.images_per_epoch)
    stopper = BestAcrossPhases(monitor="val_auc", mode="max",
                               restore_best_weights=params.keep_weights == "best",
                               patience=params.patience or params.epochs)
    callbacks, backup = _callbacks(params, live_dir, checkpoint_dir, throughput, stopper)
    rows = _run_phases(feeds, params, callbacks, stopper, strategy, initial_epoch, stopped)
    models.set_backbone_trainable(model, True)
    history = backup.history if backup else rows  # a resumed run: the epochs before the kill too
    return model, _summary(model, history, params, throughput, feeds.cached, initial_epoch, strategy, started)


def _feeds(folder, catalog: dict, params, model: keras.Model, strategy) -> _Feeds:
    """The training and validation data; for a fixed-feature model, its head and their features."""
    budget = feed.cache_budget(params)
    per_image = params.patches_per_image if params.patch_size else 1
    train, cached = feed.train_dataset(folder, catalog, params.image_size, params.batch_size, budget,
                                       params.augment, params.seed, params.patch_size, per_image)
    n_train = catalog["splits"]["train"]["records"]
    n_val = catalog["splits"]["validation"]["records"]
    val_cache = cached == n_train and n_train + n_val <= budget
    validation = feed.eval_dataset(folder, catalog, "validation", params.image_size, params.batch_size,
                                   cache=val_cache).map(lambda x, y, i: (x, y))
    mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
    log.info("train: %d images (%d cached in RAM), validation: %d, device %s%s%s", n_train, cached,
             n_val, devices.device_name(), ", mixed precision" if mixed else "",
             distribute.describe(strategy))
    fitted = model
    features = model_catalog.MODELS[params.model].fixed_features
    if features:  # extract once, then epochs cost only the head's steps
        fitted, train, validation = _on_fixed_features(model, features, train, validation,
                                                       params.batch_size, params.seed, strategy,
                                                       params.feature_passes)
        per_image *= params.feature_passes
    steps = int(np.ceil(n_train * per_image / params.batch_size))
    return _Feeds(fitted, train, validation, steps, n_train * per_image, cached)


def _resume_point(checkpoint_dir, params, run_key: str):
    """(the checkpoint folder or None, the first epoch to run, whether the killed run had already
    stopped early): 0 and False for a fresh run."""
    if checkpoint_dir and params.freeze_epochs:
        log.info("train: no checkpoints for two-phase fine-tuning (freeze_epochs > 0); "
                 "a killed run starts again")
        checkpoints.clear(checkpoint_dir)
        checkpoint_dir = None
    initial_epoch = checkpoints.prepare(checkpoint_dir, run_key) if checkpoint_dir else 0
    stopped = bool(initial_epoch) and checkpoints.stopped_early(checkpoint_dir)
    return checkpoint_dir, initial_epoch, stopped


def _callbacks(params, live_dir, checkpoint_dir, throughput, stopper):
    """(the callbacks in the order they must run, the epoch backup or None). The backup comes after
    the stopper (it saves the stopper's state) and before the loggers it replays on resume."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    callbacks = [throughput, stopper]
    if live_dir:
        callbacks.append(DVCLiveCallback(live=Live(dir=live_dir, dvcyaml=False, save_dvc_exp=False,
                                                   report=None)))
    backup = None
    if checkpoint_dir:
        backup = checkpoints.EpochBackup(checkpoint_dir, stopper, replay=callbacks[2:])
        callbacks.insert(2, backup)
    if distribute.is_chief():
        callbacks.append(EpochLog(params.epochs, throughput))
    return callbacks, backup


def _run_phases(feeds: _Feeds, params, callbacks, stopper, strategy, initial_epoch: int,
                stopped: bool) -> list[dict]:
    """The head alone for ``freeze_epochs`` (when > 0), then the whole model to ``epochs``; one row
    of logs per epoch run. A phase is skipped when empty, already done, or early stopping ended."""
    steps = feeds.steps
    phases = [(0, params.freeze_epochs, False, params.learning_rate),
              (params.freeze_epochs, params.epochs, True,
               params.fine_tune_learning_rate if params.freeze_epochs else params.learning_rate)]
    rows: list[dict] = []
    for start, end, backbone_trainable, learning_rate in phases:
        begin = max(start, initial_epoch)
        if start == end or begin > end or (rows and stopper.stopped_epoch):
            continue
        models.set_backbone_trainable(feeds.model, backbone_trainable)
        with strategy.scope():  # recompiling applies the new trainable flags
            _compile(feeds.model, learning_rate, (end - start) * steps)
        phase_data = distribute.shard_options(feeds.train.repeat().skip(begin * steps))
        with distribute.cluster_errors("training"):  # multi-worker: a dead worker is one clear line
            run = feeds.model.fit(phase_data, validation_data=distribute.shard_options(feeds.validation),
                                  epochs=initial_epoch if stopped else end, steps_per_epoch=steps,
                                  initial_epoch=begin, verbose=0, shuffle=False, callbacks=callbacks)
        rows += [dict(zip(run.history, row)) for row in zip(*run.history.values())]
    return rows


def _summary(model: keras.Model, history: list[dict], params, throughput: Throughput, cached: int,
             initial_epoch: int, strategy, started: float) -> dict:
    """metrics/train.json (and, under ``TIMING_KEYS``, metrics/timing/train.json)."""
    val_auc = [entry["val_auc"] for entry in history]
    best = int(np.argmax(val_auc)) if params.keep_weights == "best" else len(history) - 1
    log.info("train: %s epoch %d of %d (validation ROC-AUC %.4f), its weights kept", params.keep_weights,
             best + 1, len(history), val_auc[best])
    return {
        "epochs": len(history),
        "best_epoch": best + 1,
        "val_roc_auc": round(float(val_auc[best]), 6),
        "val_loss": round(float(history[best]["val_loss"]), 6),
        "train_images_per_second": round(throughput.steady_rate(), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "host_cpu_isa": devices.cpu_isa(),
        "device": devices.device_name(),
        "parameters": int(model.count_params()),
        "cached_images": cached,
        "mixed_precision": keras.mixed_precision.global_policy().name == "mixed_float16",
        "resumed_from_epoch": initial_epoch,
        "distribute": distribute.describe(strategy).lstrip(", ") or "none",
        "machine": devices.machine_facts(params.deterministic),
    }
