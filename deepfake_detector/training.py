"""Fitting a detector: the tf.data input pipeline, device and precision choice, callbacks.

The input pipeline decodes records in parallel, resizes once, caches decoded images in RAM up to a
budget (the rest streams from disk every epoch), then augments, batches and prefetches, so the
accelerator (or the CPU's training step) never waits on JPEG decoding after the first epoch.
"""

from __future__ import annotations

import logging
import statistics
import time

from . import devices

tf = devices.load_tensorflow()  # quietly: no CUDA-missing lines on a CPU
import keras  # noqa: E402
import numpy as np  # noqa: E402

from . import augment, checkpoints, models, records  # noqa: E402

log = logging.getLogger(__name__)
STREAM_SHUFFLE = 2048  # shuffle buffer for records that don't fit the cache (decoded images)


TIMING_KEYS = ("train_images_per_second", "wall_seconds")  # metrics/timing/train.json, not train.json


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
                  augment_params, seed: int) -> tuple[tf.data.Dataset, int]:
    """Shuffled, augmented, batched training data; returns (dataset, images held in the cache)."""
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
    noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    apply = augment.make_augment(augment_params)
    data = tf.data.Dataset.zip(data, noise).map(
        lambda item, s: (apply(item[0], s), item[1]), num_parallel_calls=tf.data.AUTOTUNE)
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


class EpochLog(keras.callbacks.Callback):
    """One concise line per epoch (Keras' own progress output is off)."""

    def __init__(self, epochs: int, throughput: Throughput):
        super().__init__()
        self.epochs, self.throughput = epochs, throughput

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = " ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "auc", "val_loss", "val_auc") if k in logs)
        log.info("epoch %d/%d: %s, %.0f img/s", epoch + 1, self.epochs, shown, self.throughput.rates[-1])


def fit(folder, catalog: dict, params, live_dir: str | None, checkpoint_dir=None,
        run_key: str = "") -> tuple[keras.Model, dict]:
    """Train ``params.model`` on the records in ``folder``; returns (best model, train metrics).

    With ``checkpoint_dir`` every epoch is backed up there under ``run_key`` and a run killed
    earlier resumes from its last finished epoch. The training data is one repeated dataset read
    by one iterator, so a resumed run skips the finished epochs' batches and sees exactly the
    batches (order and augmentation) that an uninterrupted run sees. ``live_dir`` None: no dvclive.
    """
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    started = time.perf_counter()
    strategy = devices.strategy(params.distribute)  # first: multi-worker must precede other TF work
    devices.seed_everything(params.seed, params.deterministic)
    mixed = devices.use_mixed_precision(params.mixed_precision)
    train_budget = cache_budget(params)
    train_data, cached = train_dataset(folder, catalog, params.image_size, params.batch_size,
                                       train_budget, params.augment, params.seed)
    n_train = catalog["splits"]["train"]["records"]
    n_val = catalog["splits"]["validation"]["records"]
    val_cache = cached == n_train and n_train + n_val <= train_budget
    val_data = eval_dataset(folder, catalog, "validation", params.image_size, params.batch_size,
                            cache=val_cache).map(lambda x, y, i: (x, y))
    steps = int(np.ceil(n_train / params.batch_size))
    initial_epoch = checkpoints.prepare(checkpoint_dir, run_key) if checkpoint_dir else 0
    train_data = devices.shard_options(train_data.repeat().skip(initial_epoch * steps))
    val_data = devices.shard_options(val_data)
    log.info("train: %d images (%d cached in RAM), validation: %d, device %s%s%s", n_train, cached,
             n_val, devices.device_name(), ", mixed precision" if mixed else "",
             devices.describe(strategy))

    with strategy.scope():
        model = models.build(params.model, params.image_size, params.weights)
        schedule = keras.optimizers.schedules.CosineDecay(params.learning_rate, params.epochs * steps,
                                                          alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
                      # XLA slows CPU training 2-9x; on a GPU it is worth it.
                      jit_compile=bool(devices.gpus()))
    throughput = Throughput(n_train)
    stopper = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                            patience=params.patience or params.epochs)
    callbacks = [throughput, stopper]
    if live_dir:
        callbacks.append(DVCLiveCallback(live=Live(dir=live_dir, dvcyaml=False, save_dvc_exp=False,
                                                   report=None)))
    if checkpoint_dir:
        backup = checkpoints.EpochBackup(checkpoint_dir, stopper, replay=callbacks[2:])
        callbacks.insert(2, backup)
    if devices.is_chief():
        callbacks.append(EpochLog(params.epochs, throughput))
    stopped = bool(initial_epoch) and checkpoints.stopped_early(checkpoint_dir)
    with devices.cluster_errors("training"):  # multi-worker: a dead worker is one clear line
        model.fit(train_data, validation_data=val_data, epochs=initial_epoch if stopped else params.epochs,
                  steps_per_epoch=steps, initial_epoch=initial_epoch, verbose=0, shuffle=False,
                  callbacks=callbacks)
    history = backup.history if checkpoint_dir else \
        [dict(zip(model.history.history, row)) for row in zip(*model.history.history.values())]
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
        "device": devices.device_name(),
        "parameters": int(model.count_params()),
        "cached_images": cached,
        "mixed_precision": mixed,
        "resumed_from_epoch": initial_epoch,
        "distribute": devices.describe(strategy).lstrip(", ") or "none",
        "machine": devices.machine_facts(params.deterministic),
    }
