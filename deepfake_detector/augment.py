"""Training-time augmentation, on single uint8 images inside tf.data, after the cache.

Flip is free of forensic meaning. JPEG re-compression and blur teach the detector that compression
and softness are not what makes a face fake: the real world re-encodes and resizes both classes.
Every random choice uses stateless ops seeded per element, so a seeded run sees the same stream.
"""

from __future__ import annotations

import tensorflow as tf


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
    return tf.cast(tf.clip_by_value(tf.round(image[0]), 0, 255), tf.uint8)


def make_augment(params):
    """A function (uint8 image, seed[2]) → uint8 image for ``train.augment`` params."""
    # stateless_random_jpeg_quality draws from [low, high) and refuses high > 100.
    quality_high = min(params.jpeg_quality[1] + 1, 100)
    quality_low = min(params.jpeg_quality[0], quality_high - 1)
    sigma_low, sigma_high = params.blur_sigma

    def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = image.shape
        seeds = tf.random.experimental.stateless_split(seed, num=5)
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
        image.set_shape(shape)
        return image

    return augment
