"""Fitting a detector: the tf.data input pipeline, device and precision choice, callbacks.

The input pipeline decodes records in parallel, resizes once, caches decoded images in RAM up to a
budget (the rest streams from disk every epoch), then batches, augments whole batches, casts and
prefetches, so the accelerator (or the CPU's training step) never waits on JPEG decoding after the
first epoch. A split that fits the budget is held as one tensor and batches are gathered from it.
"""

from __future__ import annotations

import logging
import statistics
import time

from deepfake_detector.training import devices

tf = devices.load_tensorflow()  # quietly: no CUDA-missing lines on a CPU
import keras
import numpy as np

from deepfake_detector.training import augment
from deepfake_detector.model import catalog as model_catalog
from deepfake_detector.training import checkpoints
from deepfake_detector.model import builders as models
from deepfake_detector.data import records

log = logging.getLogger(__name__)
STREAM_SHUFFLE = 2048  # shuffle buffer for records that don't fit the cache (decoded images)


TIMING_KEYS = ("train_images_per_second", "wall_seconds", "host_cpu_isa")  # metrics/timing/train.json, not train.json


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
    """Shuffled, augmented batches of (float32 images in [0, 255], labels); returns (dataset, images
    held in the cache). The cast is one batched op on the host: handing the model uint8 and letting
    its float32 Input cast made the sample's train stage 1.4x longer in wall time on the CPU.

    With ``patch_size``, each epoch holds ``patches_per_image`` random square crops of every image
    (each image's crops come from separate passes, so a batch mixes many images' patches)."""
    shards = catalog["splits"]["train"]["shards"]
    files = records.split_files(folder, catalog, "train")
    resize_to = image_size if image_size != catalog["image_size"] else None
    fitted = _cached_split(shards, cache_images)
    cached_n = sum(s["records"] for s in shards[:fitted])
    passes = patches_per_image if patch_size else 1
    if fitted == len(files):
        data = _gathered_batches(records.decoded_dataset(files, resize_to), cached_n, batch_size,
                                 passes, seed)
    else:
        data = _streamed_batches(files, fitted, cached_n, catalog["splits"]["train"]["records"],
                                 resize_to, batch_size, passes, seed)
    apply = augment.make_batch_augment(augment_params)
    if patch_size or augment.any_on(augment_params):
        noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def augmented(batch, noise_seed):
            images = batch[0]
            if patch_size:
                crop_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(noise_seed, 2))
                images = augment.random_crops(images, patch_size, crop_seed)
            return apply(images, noise_seed), batch[1]

        data = tf.data.Dataset.zip(data, noise).map(augmented, num_parallel_calls=tf.data.AUTOTUNE)

    def to_float(images, labels, *_):  # manifest indices dropped: fit would read them as sample weights
        return tf.cast(images, tf.float32), labels

    return data.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE), cached_n


def _gathered_batches(decoded: tf.data.Dataset, n: int, batch_size: int, passes: int,
                      seed: int) -> tf.data.Dataset:
    """One epoch of batches from the whole split held as one uint8 tensor (cached after the first
    epoch): each epoch draws ``passes`` permutations and gathers every batch in one op, so no tf.data
    step runs per image."""
    whole = decoded.batch(n).cache()  # one element: every image, label and index
    epoch_seed = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2).take(1)
    steps = -(-n * passes // batch_size)

    def batches(split, epoch_seed):
        keys = tf.random.stateless_uniform([passes, n], epoch_seed)
        order = tf.reshape(tf.argsort(keys, axis=1), [-1])  # each pass its own permutation

        def gather(step):
            chosen = order[step * batch_size:(step + 1) * batch_size]
            return tuple(tf.gather(part, chosen) for part in split)

        return tf.data.Dataset.range(steps).map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    return tf.data.Dataset.zip(whole, epoch_seed).flat_map(batches)


def _streamed_batches(files: list[str], fitted: int, cached_n: int, n: int, resize_to, batch_size: int,
                      passes: int, seed: int) -> tf.data.Dataset:
    """Batches when the split exceeds the cache budget: the leading ``fitted`` shards cached and
    shuffled in RAM, the rest decoded every epoch, mixed image by image in proportion."""
    parts, weights = [], []
    if fitted:
        parts.append(records.decoded_dataset(files[:fitted], resize_to).cache()
                     .shuffle(cached_n, seed=seed, reshuffle_each_iteration=True))
        weights.append(cached_n)
    parts.append(records.decoded_dataset(files[fitted:], resize_to)
                 .shuffle(STREAM_SHUFFLE, seed=seed + 1, reshuffle_each_iteration=True))
    weights.append(n - cached_n)
    if len(parts) == 1:
        data = parts[0]
    else:  # mix cached and streamed images in proportion, so every batch draws from both
        data = tf.data.Dataset.sample_from_datasets(parts, weights=[w / sum(weights) for w in weights],
                                                    seed=seed, stop_on_empty_dataset=False)
    if passes > 1:
        data = data.repeat(passes)  # each pass reshuffles and crops anew
    return data.batch(batch_size)


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
        if not self.rates:  # a resumed run that had no epoch left
            return 0.0
        return statistics.median(self.rates[1:] if len(self.rates) > 1 else self.rates)


def cache_budget(params) -> int:
    """How many decoded training images ``train.cache_ram_mb`` holds."""
    return params.cache_ram_mb * 2**20 // (params.image_size ** 2 * 3)


def feed_rate(folder, catalog: dict, params, epochs: int = 3) -> dict:
    """Images per second of the training input alone (no model): the dataset ``fit`` reads, iterated
    ``epochs`` times. The first epoch decodes and fills the cache; the steady rate is the median of
    the others. ``benchmarks/gpu_check.py`` and ``benchmarks/feed_speed.py`` both measure this."""
    data, cached = train_dataset(folder, catalog, params.image_size, params.batch_size, cache_budget(params),
                                 params.augment, params.seed)
    n_train = catalog["splits"]["train"]["records"]
    rates = []
    for _ in range(max(epochs, 2)):
        start = time.perf_counter()
        for _batch in data:
            pass
        rates.append(n_train / (time.perf_counter() - start))
    return {"images": n_train, "cached_images": cached, "epochs": len(rates),
            "first_epoch_images_per_second": round(rates[0], 1),
            "steady_images_per_second": round(statistics.median(rates[1:]), 1)}


def build_model(params, strategy=None) -> keras.Model:
    """The model to train, with its starting weights (ImageNet, or a file). The stage calls it before
    any data is read, so a missing weights file or an offline download fails first. Seeds and the
    precision policy are set here because the initial weights and the layers' dtypes depend on them."""
    devices.seed_everything(params.seed, params.deterministic)
    devices.use_mixed_precision(params.mixed_precision)
    size = None if params.patch_size else params.image_size  # patches and whole images alike
    with (strategy or tf.distribute.get_strategy()).scope():
        return models.build(params.model, size, params.weights)


def inference_rule(params) -> dict:
    """How a whole image is scored, stored in the model file's metadata (``inference.Scorer``)."""
    if params.inference == "patch_grid":
        return {"inference": "patch_grid", "patch_size": params.patch_size}
    return {"inference": "whole_image"}


def _on_fixed_features(model: keras.Model, layer_name: str, train_data, val_data, batch_size: int,
                       seed: int, strategy):
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
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    started = time.perf_counter()
    strategy = strategy or devices.strategy(params.distribute)  # first: multi-worker precedes other TF work
    if model is None:
        model = build_model(params, strategy)
    mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
    train_budget = cache_budget(params)
    per_image = params.patches_per_image if params.patch_size else 1
    train_data, cached = train_dataset(folder, catalog, params.image_size, params.batch_size,
                                       train_budget, params.augment, params.seed,
                                       params.patch_size, per_image)
    n_train = catalog["splits"]["train"]["records"]
    n_val = catalog["splits"]["validation"]["records"]
    val_cache = cached == n_train and n_train + n_val <= train_budget
    val_data = eval_dataset(folder, catalog, "validation", params.image_size, params.batch_size,
                            cache=val_cache).map(lambda x, y, i: (x, y))
    log.info("train: %d images (%d cached in RAM), validation: %d, device %s%s%s", n_train, cached,
             n_val, devices.device_name(), ", mixed precision" if mixed else "", devices.describe(strategy))

    fitted_model = model
    features = model_catalog.MODELS[params.model].fixed_features
    if features:  # extract once, then epochs cost only the head's steps
        fitted_model, train_data, val_data = _on_fixed_features(model, features, train_data, val_data,
                                                                params.batch_size, params.seed, strategy)
    steps = int(np.ceil(n_train * per_image / params.batch_size))
    if checkpoint_dir and params.freeze_epochs:
        log.info("train: no checkpoints for two-phase fine-tuning (freeze_epochs > 0); a killed run starts again")
        checkpoints.clear(checkpoint_dir)
        checkpoint_dir = None
    initial_epoch = checkpoints.prepare(checkpoint_dir, run_key) if checkpoint_dir else 0
    throughput = Throughput(n_train * per_image)
    stopper = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                            patience=params.patience or params.epochs)
    callbacks = [throughput, stopper]
    if live_dir:
        callbacks.append(DVCLiveCallback(live=Live(dir=live_dir, dvcyaml=False, save_dvc_exp=False,
                                                   report=None)))
    backup = None
    if checkpoint_dir:
        backup = checkpoints.EpochBackup(checkpoint_dir, stopper, replay=callbacks[2:])
        callbacks.insert(2, backup)
    if devices.is_chief():
        callbacks.append(EpochLog(params.epochs, throughput))
    stopped = bool(initial_epoch) and checkpoints.stopped_early(checkpoint_dir)
    phases = [(0, params.freeze_epochs, False, params.learning_rate),
              (params.freeze_epochs, params.epochs, True,
               params.fine_tune_learning_rate if params.freeze_epochs else params.learning_rate)]
    rows: list[dict] = []
    for start, end, backbone_trainable, learning_rate in phases:
        begin = max(start, initial_epoch)
        if start == end or begin > end or (rows and stopper.stopped_epoch):
            continue
        models.set_backbone_trainable(fitted_model, backbone_trainable)
        with strategy.scope():  # recompiling applies the new trainable flags
            _compile(fitted_model, learning_rate, (end - start) * steps)
        # one EarlyStopping across phases: its best weights and patience carry on
        stopper.on_train_begin = lambda logs=None, first=not rows: \
            type(stopper).on_train_begin(stopper, logs) if first else None
        phase_data = devices.shard_options(train_data.repeat().skip(begin * steps))
        with devices.cluster_errors("training"):  # multi-worker: a dead worker is one clear line
            run = fitted_model.fit(phase_data, validation_data=devices.shard_options(val_data),
                                   epochs=initial_epoch if stopped else end, steps_per_epoch=steps,
                                   initial_epoch=begin, verbose=0, shuffle=False, callbacks=callbacks)
        rows += [dict(zip(run.history, row)) for row in zip(*run.history.values())]
    models.set_backbone_trainable(model, True)
    history = backup.history if backup else rows
    val_auc = [entry["val_auc"] for entry in history]
    best = int(np.argmax(val_auc))
    log.info("train: best epoch %d of %d (validation ROC-AUC %.4f), its weights kept", best + 1,
             len(history), val_auc[best])
    return model, {
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
        "mixed_precision": mixed,
        "resumed_from_epoch": initial_epoch,
        "distribute": devices.describe(strategy).lstrip(", ") or "none",
        "machine": devices.machine_facts(params.deterministic),
    }
