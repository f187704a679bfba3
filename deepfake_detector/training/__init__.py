"""Fitting a detector: the fit loop and its callbacks, augmentation, checkpoints, TensorFlow's devices
and multi-worker training."""
