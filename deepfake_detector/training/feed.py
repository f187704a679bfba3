"""The training feed: records → shuffled, augmented, float32 batches, fast enough that the
accelerator (or the CPU's training step) never waits on JPEG decoding after the first epoch.

Records are decoded in parallel, resized once and cached in RAM up to ``train.cache_ram_mb`` (the
rest streams from disk every epoch); a split that fits is held as one tensor and each batch is
gathered from it in one op. Augmentation runs on whole batches, then the cast, then prefetch.
"""

from __future__ import annotations

import statistics
import time

from deepfake_detector.core.entrypoint import load_tensorflow

tf = load_tensorflow()  # quietly: no CUDA-missing lines on a CPU

from deepfake_detector.data import records
from deepfake_detector.training import augment

STREAM_SHUFFLE = 2048  # shuffle buffer for records that don't fit the cache (decoded images)


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
