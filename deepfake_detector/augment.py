"""Training-time augmentation, on single uint8 images inside tf.data, after the cache.

Flip is free of forensic meaning. JPEG re-compression and blur teach the detector that compression
and softness are not what makes a face fake: the real world re-encodes and resizes both classes.
Colour jitter (lighting, white balance), downscale-then-upscale (a resized upload) and cutout (a
hand or a caption over part of the face) are the other changes uploads go through; the README's
"Augmentations" section has what each one did on Validation.
Every random choice uses stateless ops seeded per element, so a seeded run sees the same stream.
"""

from __future__ import annotations

import tensorflow as tf


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    radius = 3
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(x / sigma))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    image = tf.cast(image, tf.float32)[tf.newaxis]
    horizontal = tf.tile(tf.reshape(kernel_1d, [1, -1, 1, 1]), [1, 1, 3, 1])
    vertical = tf.tile(tf.reshape(kernel_1d, [-1, 1, 1, 1]), [1, 1, 3, 1])
    image = tf.nn.depthwise_conv2d(image, horizontal, [1, 1, 1, 1], "SAME")
    image = tf.nn.depthwise_conv2d(image, vertical, [1, 1, 1, 1], "SAME")
    return _to_uint8(image[0])


def _colour(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Brightness ±64·strength, then contrast and saturation ×[1 - strength, 1 + strength]."""
    brightness, contrast, saturation = tf.unstack(
        tf.random.stateless_uniform([3], seed, -strength, strength))
    image = tf.cast(image, tf.float32)
    mean = tf.reduce_mean(image)
    image = (image - mean) * (1 + contrast) + mean + 64 * brightness
    grey = tf.reduce_mean(image, axis=-1, keepdims=True)
    return _to_uint8(grey + (image - grey) * (1 + saturation))


def _rescale(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Down by ``factor`` (area-averaged, as a resizer does), then back up bilinearly."""
    size = tf.shape(image)[:2]
    small = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    image = tf.image.resize(tf.cast(image, tf.float32), small, method="area")
    return _to_uint8(tf.image.resize(image, size, method="bilinear"))


def _cutout(image: tf.Tensor, fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """A mid-grey square of side ``fraction`` of the shorter side, at a uniform random place."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
    corner = tf.random.stateless_uniform([2], seed, 0, 1) * tf.cast(
        tf.stack([height - side + 1, width - side + 1]), tf.float32)
    top, left = tf.unstack(tf.cast(corner, tf.int32))
    rows = tf.range(height)[:, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return tf.where(inside[..., tf.newaxis], tf.constant(128, tf.uint8), image)


def make_augment(params):
    """A function (uint8 image, seed[2]) → uint8 image for ``train.augment`` params."""
    # stateless_random_jpeg_quality draws from [low, high) and refuses high > 100.
    quality_high = min(params.jpeg_quality[1] + 1, 100)
    quality_low = min(params.jpeg_quality[0], quality_high - 1)
    sigma_low, sigma_high = params.blur_sigma

    def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = image.shape
        seeds = tf.random.experimental.stateless_split(seed, num=11)
        if params.flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[0])
        if params.jpeg_probability > 0:
            apply = tf.random.stateless_uniform([], seeds[1]) < params.jpeg_probability
            image = tf.cond(apply, lambda: tf.image.stateless_random_jpeg_quality(
                image, quality_low, quality_high, seeds[2]), lambda: image)
        if params.blur_probability > 0:
            apply = tf.random.stateless_uniform([], seeds[3]) < params.blur_probability
            sigma = tf.random.stateless_uniform([], seeds[4], sigma_low, sigma_high)
            image = tf.cond(apply, lambda: _gaussian_blur(image, sigma), lambda: image)
        if params.colour_probability > 0:
            apply = tf.random.stateless_uniform([], seeds[5]) < params.colour_probability
            image = tf.cond(apply, lambda: _colour(image, params.colour_strength, seeds[6]), lambda: image)
        if params.rescale_probability > 0:
            apply = tf.random.stateless_uniform([], seeds[7]) < params.rescale_probability
            factor = tf.random.stateless_uniform([], seeds[8], *params.rescale_range)
            image = tf.cond(apply, lambda: _rescale(image, factor), lambda: image)
        if params.cutout_probability > 0:
            apply = tf.random.stateless_uniform([], seeds[9]) < params.cutout_probability
            image = tf.cond(apply, lambda: _cutout(image, params.cutout_fraction, seeds[10]), lambda: image)
        image.set_shape(shape)
        return image

    return augment
