"""Keras metrics the task heads compile with.

>>> import numpy as np
>>> metric = MaskedTokenAccuracy(ignore_class=-1)
>>> metric.update_state(np.array([[1, -1, 0]]), np.array([[[0.0, 1.0], [5.0, 0.0], [0.0, 1.0]]]))
>>> float(metric.result())
0.5
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfsft")
class MaskedTokenAccuracy(keras.metrics.Mean):
    """Share of tokens whose argmax is the target, over tokens whose target is not
    ``ignore_class`` (padding, ``[CLS]``/``[SEP]``, continuation pieces)."""

    def __init__(self, ignore_class: int = -1, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "int32")
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
        weight = keras.ops.cast(keras.ops.not_equal(y_true, self.ignore_class), "float32")
        if sample_weight is not None:
            weight = weight * keras.ops.cast(sample_weight, "float32")
        return super().update_state(
            keras.ops.cast(keras.ops.equal(predicted, y_true), "float32"), sample_weight=weight)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="tfsft")
class SpanLoss(keras.losses.Loss):
    """Extractive question answering: the mean of the cross-entropies of the start and the end
    token. Targets are ``[batch, 2]`` token positions (``[CLS]``, 0, when the window does not
    hold the answer); predictions ``[batch, length, 2]`` start and end logits.

    >>> import numpy as np
    >>> logits = np.zeros((1, 4, 2), np.float32)
    >>> round(float(SpanLoss()(np.array([[1, 2]]), logits)), 4)  # log(4): uniform over 4 tokens
    1.3863
    """

    def __init__(self, name: str = "span_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1, 2))
        start = keras.losses.sparse_categorical_crossentropy(
            y_true[:, 0], y_pred[:, :, 0], from_logits=True)
        end = keras.losses.sparse_categorical_crossentropy(
            y_true[:, 1], y_pred[:, :, 1], from_logits=True)
        return (start + end) / 2.0


def _replica_context():
    """The ``tf.distribute`` replica context, or None (cross-replica, or symbolic tracing)."""
    import tensorflow as tf

    return tf.distribute.get_replica_context()


@keras.saving.register_keras_serializable(package="tfsft")
class SpanAccuracy(keras.metrics.Mean):
    """Share of windows whose argmax start and argmax end tokens are both the target's."""

    def __init__(self, name: str = "span_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1, 2))
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=1), "int32")  # [batch, 2]
        both = keras.ops.all(keras.ops.equal(predicted, y_true), axis=-1)
        return super().update_state(keras.ops.cast(both, "float32"), sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="tfsft")
class MaskedTokenLoss(keras.losses.Loss):
    """Mean cross-entropy over the tokens whose target is not ``ignore_class`` (a causal
    language model's response tokens): every trained token of the batch weighs the same,
    however the tokens are spread over its rows.

    >>> import numpy as np
    >>> logits = np.zeros((1, 3, 4), np.float32)
    >>> round(float(MaskedTokenLoss()(np.array([[1, 2, -1]]), logits)), 4)  # log(4)
    1.3863
    """

    def __init__(self, ignore_class: int = -1, name: str = "token_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, "int32")
        keep = keras.ops.not_equal(y_true, self.ignore_class)
        safe = keras.ops.where(keep, y_true, 0)
        losses = keras.losses.sparse_categorical_crossentropy(safe, y_pred, from_logits=True)
        weight = keras.ops.cast(keep, losses.dtype)
        total, count = keras.ops.sum(losses * weight), keras.ops.sum(weight)
        # Under a tf.distribute strategy each replica returns its share of the global batch's
        # mean (its sum over all replicas' tokens): the gradients Keras sums over replicas are
        # then the global mean's, as in one process. Keras scales only the losses it averages
        # itself, not one already reduced to a number like this.
        context = _replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            count = context.all_reduce("SUM", count)
        return total / keras.ops.maximum(count, 1.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}
