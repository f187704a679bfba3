"""Fitting a detector: the tf.data input pipeline, device and precision choice, callbacks.

The input pipeline decodes records in parallel, resizes once, caches decoded images in RAM up to a
budget (the rest streams from disk every epoch), then augments, batches and prefetches, so the
accelerator (or the CPU's training step) never waits on JPEG decoding after the first epoch.
"""

from __future__ import annotations

import logging
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from . import augment, catalog as model_catalog, models, records

log = logging.getLogger(__name__)
STREAM_SHUFFLE = 2048  # shuffle buffer for records that don't fit the cache (decoded images)


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU:{details.get('device_name', gpus[0].name)}" + (f" x{len(gpus)}" if len(gpus) > 1 else "")


def use_mixed_precision(mode: str) -> bool:
    """Mixed float16 pays off on GPUs only; on CPU it is slower and changes results."""
    enabled = mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled else "float32")
    return enabled


def _cached_split(shards: list[dict], budget_images: int) -> int:
    """How many leading shards fit the cache budget (whole shards: the file is the unit of reading)."""
    used = fitted = 0
    for shard in shards:
        if used + shard["records"] > budget_images:
            break
        used += shard["records"]
        fitted += 1
    return fitted


def train_dataset(folder, catalog: dict, image_size: int, batch_size: int, cache_images: int,
                  augment_params, seed: int, patch_size: int = 0,
                  patches_per_image: int = 1) -> tuple[tf.data.Dataset, int]:
    """Shuffled, augmented, batched training data; returns (dataset, images held in the cache).

    With ``patch_size``, each epoch holds ``patches_per_image`` random square crops of every image
    (each image's crops come from separate passes, so a batch mixes many images' patches)."""
    shards = catalog["splits"]["train"]["shards"]
    files = records.split_files(folder, catalog, "train")
    resize_to = image_size if image_size != catalog["image_size"] else None
    fitted = _cached_split(shards, cache_images)
    cached_n = sum(s["records"] for s in shards[:fitted])
    parts, weights = [], []
    if fitted:
        parts.append(records.decoded_dataset(files[:fitted], resize_to).cache()
                     .shuffle(cached_n, seed=seed, reshuffle_each_iteration=True))
        weights.append(cached_n)
    if fitted < len(files):
        parts.append(records.decoded_dataset(files[fitted:], resize_to)
                     .shuffle(STREAM_SHUFFLE, seed=seed + 1, reshuffle_each_iteration=True))
        weights.append(catalog["splits"]["train"]["records"] - cached_n)
    if len(parts) == 1:
        data = parts[0]
    else:  # mix cached and streamed images in proportion, so every batch draws from both
        data = tf.data.Dataset.sample_from_datasets(parts, weights=[w / sum(weights) for w in weights],
                                                    seed=seed, stop_on_empty_dataset=False)
    if patch_size and patches_per_image > 1:
        data = data.repeat(patches_per_image)  # each pass reshuffles and crops anew
    noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    apply = augment.make_augment(augment_params)

    def augmented(item, noise_seed):
        image = item[0]
        if patch_size:
            crop_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(noise_seed, 2))
            image = tf.image.stateless_random_crop(image, [patch_size, patch_size, 3], crop_seed)
        return apply(image, noise_seed), item[1]

    data = tf.data.Dataset.zip(data, noise).map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return _batched(data, batch_size), cached_n


def eval_dataset(folder, catalog: dict, split: str, image_size: int, batch_size: int,
                 cache: bool = False) -> tf.data.Dataset:
    """(images, labels, manifest indices) in record order, for validation and evaluation."""
    resize_to = image_size if image_size != catalog["image_size"] else None
    data = records.decoded_dataset(records.split_files(folder, catalog, split), resize_to)
    if cache:
        data = data.cache()
    return _batched(data, batch_size)


def _batched(data: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    def to_float(images, labels, *rest):
        return (tf.cast(images, tf.float32), labels, *rest)

    return data.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE) \
        .prefetch(tf.data.AUTOTUNE)


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
        return statistics.median(self.rates[1:] if len(self.rates) > 1 else self.rates)


def build_model(params) -> keras.Model:
    """The model to train, with its starting weights (ImageNet, or a file): called at stage start,
    before any data is read, so a missing weights file or an offline download fails first."""
    size = None if params.patch_size else params.image_size  # patches and whole images alike
    return models.build(params.model, size, params.weights)


def inference_rule(params) -> dict:
    """How a whole image is scored, stored in the model file's metadata (``inference.Scorer``)."""
    if params.inference == "patch_grid":
        return {"inference": "patch_grid", "patch_size": params.patch_size}
    return {"inference": "whole_image"}


def _on_fixed_features(model: keras.Model, layer_name: str, train_data, val_data, batch_size: int,
                       seed: int):
    """(the head after ``layer_name`` as its own model sharing ``model``'s layers, training and
    validation data as that layer's outputs, computed once). The extractor has no trainable weights,
    so training the head on stored features is the same as training the whole model; one pass of
    augmentation is drawn."""
    extractor = keras.Model(model.inputs, model.get_layer(layer_name).output)

    def extract(data):
        parts = [(extractor.predict_on_batch(images), labels.numpy()) for images, labels in data]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_x, train_y = extract(train_data)
    val_x, val_y = extract(val_data)
    inputs = x = keras.Input(train_x.shape[1:])
    after = False
    for layer in model.layers:
        if after:
            x = layer(x)
        after = after or layer.name == layer_name
    head = keras.Model(inputs, x, name=f"{model.name}_head")
    from . import richmodel

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
                  jit_compile=bool(tf.config.list_physical_devices("GPU")))


def fit(folder, catalog: dict, params, live_dir: str, model: keras.Model | None = None) -> tuple[keras.Model, dict]:
    """Train ``params.model`` (or ``model``, from ``build_model``) on the records in ``folder``;
    returns (best model, train metrics).

    ``freeze_epochs`` > 0: those epochs train the head alone at ``learning_rate``, then the whole
    model trains for the rest at ``fine_tune_learning_rate``. Early stopping watches Validation
    ROC-AUC over both phases and keeps the best weights."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    started = time.perf_counter()
    keras.utils.set_random_seed(params.seed)
    mixed = use_mixed_precision(params.mixed_precision)
    bytes_per_image = params.image_size ** 2 * 3
    train_budget = params.cache_ram_mb * 2**20 // bytes_per_image
    per_image = params.patches_per_image if params.patch_size else 1
    train_data, cached = train_dataset(folder, catalog, params.image_size, params.batch_size,
                                       train_budget, params.augment, params.seed,
                                       params.patch_size, per_image)
    n_train = catalog["splits"]["train"]["records"]
    n_val = catalog["splits"]["validation"]["records"]
    val_cache = cached == n_train and n_train + n_val <= train_budget
    val_data = eval_dataset(folder, catalog, "validation", params.image_size, params.batch_size,
                            cache=val_cache).map(lambda x, y, i: (x, y))
    log.info("train: %d images (%d cached in RAM), validation: %d, device %s%s", n_train, cached,
             n_val, device_name(), ", mixed precision" if mixed else "")

    if model is None:
        model = build_model(params)
    fitted_model = model
    features = model_catalog.MODELS[params.model].fixed_features
    if features:  # extract once, then epochs cost only the head's steps
        fitted_model, train_data, val_data = _on_fixed_features(model, features, train_data, val_data,
                                                                params.batch_size, params.seed)
    steps = int(np.ceil(n_train * per_image / params.batch_size))
    throughput = Throughput(n_train * per_image)
    stopper = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                            patience=params.patience or params.epochs, verbose=1)
    live = Live(dir=live_dir, dvcyaml=False, save_dvc_exp=False, report=None)
    callbacks = [throughput, stopper, DVCLiveCallback(live=live)]
    history: dict[str, list] = {}
    phases = [(params.freeze_epochs, False, params.learning_rate),
              (params.epochs - params.freeze_epochs, True,
               params.fine_tune_learning_rate if params.freeze_epochs else params.learning_rate)]
    done = 0
    for epochs, backbone_trainable, learning_rate in phases:
        if not epochs or (done and stopper.stopped_epoch):
            continue
        models.set_backbone_trainable(fitted_model, backbone_trainable)
        _compile(fitted_model, learning_rate, epochs * steps)  # recompiling applies the new trainable flags
        # one EarlyStopping across phases: its best weights and patience carry on
        stopper.on_train_begin = lambda logs=None: None if done else type(stopper).on_train_begin(stopper, logs)
        run = fitted_model.fit(train_data, validation_data=val_data, initial_epoch=done, epochs=done + epochs,
                        verbose=2, callbacks=callbacks)
        for key, values in run.history.items():
            history.setdefault(key, []).extend(values)
        done += len(run.history["loss"])
    models.set_backbone_trainable(model, True)
    best = int(np.argmax(history["val_auc"]))
    return model, {
        "epochs": len(history["loss"]),
        "best_epoch": best + 1,
        "val_roc_auc": round(float(history["val_auc"][best]), 6),
        "val_loss": round(float(history["val_loss"][best]), 6),
        "train_images_per_second": round(throughput.steady_rate(), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "device": device_name(),
        "parameters": int(model.count_params()),
        "cached_images": cached,
        "mixed_precision": mixed,
    }
