"""Two fixes that let Keras 3's ``model.fit`` run under MultiWorkerMirroredStrategy
(keras-team/keras#20585, open; Keras 3.15, TensorFlow 2.21). The only patch of Keras internals in
this project; ``distribute.strategy`` applies it when ``train.distribute`` is ``multi_worker``, and
nothing else changes for the other strategies.

Keras' TensorFlow trainer fails in two places when more than one worker is in the cluster:

1. ``TensorFlowTrainer._maybe_symbolic_build`` (keras/src/backend/tensorflow/trainer.py:731) builds
   the optimizer and metrics from one batch that it gets with ``strategy.reduce("MEAN", batch)``;
   the multi-worker strategy can't reduce a nested batch (``ValueError: Attempt to convert a value
   (PerReplica...) with an unsupported type``). Only the batch's shapes and dtypes matter there,
   so the dataset's element spec serves.
2. ``reduce_per_replica`` (trainer.py:841) reduces each training step's logs, which are scalars,
   with ``strategy.reduce("MEAN", v, axis=0)``: ``Invalid reduction dimension 0 for input with 0
   dimensions``. The mean over replicas (``axis=None``) is what the other strategies compute.

Epoch logs are unaffected by (2): Keras reads them at the end of each epoch from the metrics'
sync-on-read variables, which sum over all workers, so validation AUC is that of the whole split.
"""

from __future__ import annotations

import hashlib
import inspect

_applied = False
_originals: dict = {}

# The Keras functions the patch replaces or relies on, with the sha256 of their source in the Keras
# it was written against (3.15). tests/test_distribute.py fails when an upgrade changes one: then
# read the new code, check that both fixes are still needed and right, and record the new digests.
KERAS_SOURCE_SHA256 = {
    "TensorFlowTrainer._maybe_symbolic_build":
        "92a504f5eba9b29f81f1bf26180bdd5bf5186b06b7bda426534b90d2d02bc1c2",
    "reduce_per_replica": "2e7d54b1e6edc29a8c6a7e6b66cd4c8be3ba7842412c93753ac3afe169fa7fb8",
    "_collective_all_reduce_multi_worker": "0302369d850e6694978fa7691c0e97b79cd0cf83a6bbef7caed8738e1f1a5c24",
}


def keras_sources() -> dict[str, str]:
    """The sha256 of the installed Keras' source of each function in ``KERAS_SOURCE_SHA256`` (the
    unpatched one, also after ``apply``)."""
    from keras.src.backend.tensorflow import trainer

    found = {"TensorFlowTrainer._maybe_symbolic_build": trainer.TensorFlowTrainer._maybe_symbolic_build,
             "reduce_per_replica": trainer.reduce_per_replica,
             "_collective_all_reduce_multi_worker": trainer._collective_all_reduce_multi_worker}
    found.update(_originals)
    return {name: hashlib.sha256(inspect.getsource(function).encode()).hexdigest()
            for name, function in found.items()}


def apply() -> None:
    """Patch Keras' TensorFlow trainer once (idempotent); the fixes act only under a multi-worker
    strategy, so a process that later trains with another strategy is unaffected."""
    global _applied
    if _applied:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    multi_worker = trainer._collective_all_reduce_multi_worker
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None and multi_worker(strategy):
            # (1): the dataset's element spec has the shapes and dtypes the build needs, and reading
            # it consumes no batch (Keras' own path trains without its first batch)
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
            iterator = None
        return original_build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and multi_worker(strategy):  # (2): scalar step logs, mean over replicas
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    _originals.update({"TensorFlowTrainer._maybe_symbolic_build": original_build,
                       "reduce_per_replica": original_reduce})
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    _applied = True
