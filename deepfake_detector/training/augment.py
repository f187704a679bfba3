"""Training-time augmentation, on whole uint8 batches inside tf.data, after the cache.

Flip is free of forensic meaning. JPEG re-compression and blur teach the detector that compression
and softness are not what makes a face fake: the real world re-encodes and resizes both classes.
Colour jitter (lighting, white balance), downscale-then-upscale (a resized upload), sensor noise
and cutout (a hand or a caption over part of the face) are the other changes uploads go through;
docs/results.md ("Augmentations on real faces") has what each one did on Validation.

Each augmentation draws its per-image decision and strength for the whole batch at once, then works
on the chosen images only, as batched ops (one tf.data step per batch, not per image: that overhead
was most of the feed's time). Every random choice uses stateless ops seeded per batch, so a seeded
run sees the same stream.
"""

from __future__ import annotations

import tensorflow as tf


def _to_uint8(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


def _gaussian_blur(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Each image [n, h, w, 3] blurred with its own ``sigma`` [n]: the images go side by side as
    channels, so one depthwise convolution applies every image's own kernel."""
    radius = 3
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(x[tf.newaxis] / sigma[:, tf.newaxis]))  # [n, 7]
    kernel_1d /= tf.reduce_sum(kernel_1d, axis=1, keepdims=True)
    per_channel = tf.reshape(tf.repeat(kernel_1d, 3, axis=0), [-1, 2 * radius + 1])  # [n*3, 7]
    horizontal = tf.transpose(per_channel)[tf.newaxis, :, :, tf.newaxis]  # [1, 7, n*3, 1]
    vertical = tf.transpose(per_channel)[:, tf.newaxis, :, tf.newaxis]  # [7, 1, n*3, 1]
    side_by_side = tf.reshape(tf.transpose(tf.cast(images, tf.float32), [1, 2, 0, 3]),
                              [1, height, width, n * 3])
    side_by_side = tf.nn.depthwise_conv2d(side_by_side, horizontal, [1, 1, 1, 1], "SAME")
    side_by_side = tf.nn.depthwise_conv2d(side_by_side, vertical, [1, 1, 1, 1], "SAME")
    return _to_uint8(tf.transpose(tf.reshape(side_by_side, [height, width, n, 3]), [2, 0, 1, 3]))


def _colour(images: tf.Tensor, jitter: tf.Tensor) -> tf.Tensor:
    """Brightness ±64·strength, then contrast and saturation ×[1 - strength, 1 + strength];
    ``jitter`` [n, 3] holds each image's draws in [-strength, strength]."""
    brightness, contrast, saturation = (jitter[:, i, tf.newaxis, tf.newaxis, tf.newaxis] for i in range(3))
    images = tf.cast(images, tf.float32)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * (1 + contrast) + mean + 64 * brightness
    grey = tf.reduce_mean(images, axis=-1, keepdims=True)
    return _to_uint8(grey + (images - grey) * (1 + saturation))


def _rescale(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Down by ``factor`` (area-averaged, as a resizer does), then back up bilinearly."""
    size = tf.shape(image)[:2]
    small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    image = tf.image.resize(tf.cast(image, tf.float32), small, method="area")
    return _to_uint8(tf.image.resize(image, size, method="bilinear"))


def _noise(images: tf.Tensor, sigma: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Gaussian noise of each image's own ``sigma`` [n] grey levels (a sensor, a dark room)."""
    grain = tf.random.stateless_normal(tf.shape(images), seed) * sigma[:, tf.newaxis, tf.newaxis, tf.newaxis]
    return _to_uint8(tf.cast(images, tf.float32) + grain)


def _corners(place: tf.Tensor, height, width, side) -> tf.Tensor:
    """[n, 2] top-left corners of ``side`` squares: ``place`` [n, 2], uniform in [0, 1), says where
    in the free range of each image each corner goes."""
    return tf.cast(place * tf.cast(tf.stack([height - side + 1, width - side + 1]), tf.float32), tf.int32)


def random_crops(images: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """A random ``size`` square of each image [n, h, w, c], each at its own place."""
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    corner = _corners(tf.random.stateless_uniform([n, 2], seed, 0, 1), height, width, size)
    rows = corner[:, :1] + tf.range(size)[tf.newaxis]
    cols = corner[:, 1:] + tf.range(size)[tf.newaxis]
    crops = tf.gather(tf.gather(images, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return tf.ensure_shape(crops, [None, size, size, images.shape[-1]])


def _cutout(images: tf.Tensor, fraction: float, place: tf.Tensor) -> tf.Tensor:
    """A mid-grey square of side ``fraction`` of the shorter side per image, at ``place`` [n, 2]
    (uniform in [0, 1): where in the free range its corner goes)."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.maximum(tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
    corner = _corners(place, height, width, side)
    top, left = corner[:, 0, tf.newaxis, tf.newaxis], corner[:, 1, tf.newaxis, tf.newaxis]
    rows = tf.range(height)[tf.newaxis, :, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, tf.newaxis, :]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return tf.where(inside[..., tf.newaxis], tf.constant(128, tf.uint8), images)


def _on_chosen(images: tf.Tensor, chosen: tf.Tensor, change, *draws: tf.Tensor) -> tf.Tensor:
    """``images`` with the ``chosen`` ones (bool [n]) replaced by ``change(those, their draws...)``.
    The changed images are appended and one gather puts them in place: whole-batch copies run at
    memory speed, where a per-pixel select (``tf.where`` on a broadcast mask) is several times slower."""
    where = tf.where(chosen)[:, 0]

    def changed():
        those = tf.gather(images, where)
        replaced = tf.ensure_shape(change(those, *(tf.gather(d, where) for d in draws)), those.shape)
        n = tf.shape(images, out_type=tf.int64)[0]
        order = tf.where(chosen, n + tf.cumsum(tf.cast(chosen, tf.int64), exclusive=True), tf.range(n))
        return tf.gather(tf.concat([images, replaced], 0), order)

    return tf.cond(tf.reduce_any(chosen), changed, lambda: images)


def _flip(images: tf.Tensor) -> tf.Tensor:
    """Left-right; reversing [n·h, w, 3] is ~2.5x faster than [n, h, w, 3] in TensorFlow's CPU kernel."""
    shape = tf.shape(images)
    return tf.reshape(tf.reverse(tf.reshape(images, [-1, shape[2], shape[3]]), [1]), shape)


def _each(fn):
    """``fn`` (one image, its draws) applied image by image (for ops that take a scalar setting)."""
    return lambda images, *draws: tf.map_fn(lambda args: fn(*args), (images, *draws),
                                            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.uint8))


def make_batch_augment(params):
    """A function (uint8 images [n, h, w, 3], seed[2]) → uint8 images for ``train.augment`` params:
    each image independently gets each augmentation with its probability."""
    quality_low, quality_high = params.jpeg_quality[0], params.jpeg_quality[1] + 1  # integers, both ends
    sigma_low, sigma_high = params.blur_sigma

    def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = images.shape
        n = tf.shape(images)[0]
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=11))

        def chance(i, probability):
            return tf.random.stateless_uniform([n], seeds[i]) < probability

        if params.flip:
            images = _on_chosen(images, chance(0, 0.5), _flip)
        if params.jpeg_probability > 0:
            quality = tf.random.stateless_uniform([n], seeds[2], quality_low, quality_high, tf.int32)
            images = _on_chosen(images, chance(1, params.jpeg_probability),
                                _each(lambda image, q: tf.image.adjust_jpeg_quality(image, q)), quality)
        if params.blur_probability > 0:
            sigma = tf.random.stateless_uniform([n], seeds[4], sigma_low, sigma_high)
            images = _on_chosen(images, chance(3, params.blur_probability), _gaussian_blur, sigma)
        if params.colour_probability > 0:
            strength = params.colour_strength
            jitter = tf.random.stateless_uniform([n, 3], seeds[6], -strength, strength)
            images = _on_chosen(images, chance(5, params.colour_probability), _colour, jitter)
        if params.rescale_probability > 0:
            factor = tf.random.stateless_uniform([n], seeds[8], *params.rescale_range)
            images = _on_chosen(images, chance(7, params.rescale_probability), _each(_rescale), factor)
        if params.noise_probability > 0:  # seeds of its own: the other draws stay as they were before it
            chosen_seed, sigma_seed, grain_seed = tf.unstack(tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(seed, 1), num=3))
            sigma = tf.random.stateless_uniform([n], sigma_seed, *params.noise_sigma)
            chosen = tf.random.stateless_uniform([n], chosen_seed) < params.noise_probability
            images = _on_chosen(images, chosen, lambda those, s: _noise(those, s, grain_seed), sigma)
        if params.cutout_probability > 0:
            place = tf.random.stateless_uniform([n, 2], seeds[10])
            images = _on_chosen(images, chance(9, params.cutout_probability),
                                lambda chosen, where: _cutout(chosen, params.cutout_fraction, where), place)
        images.set_shape(shape)
        return images

    return augment


def any_on(params) -> bool:
    """Whether ``train.augment`` changes any image (else the feed skips the augmentation step)."""
    return bool(params.flip) or any(getattr(params, f"{kind}_probability") > 0
                                    for kind in ("jpeg", "blur", "colour", "rescale", "noise", "cutout"))


def make_augment(params):
    """The same on one image: (uint8 image [h, w, 3], seed[2]) → uint8 image."""
    batch_augment = make_batch_augment(params)
    return lambda image, seed: batch_augment(image[tf.newaxis], seed)[0]
