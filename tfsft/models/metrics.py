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
