"""AdamW as BERT fine-tuning wants it: no weight decay on LayerNorm parameters and biases.

>>> optimizer = adamw(learning_rate=2e-5, weight_decay=0.01, clipnorm=1.0)
>>> optimizer.global_clipnorm
1.0
"""

from __future__ import annotations

import keras

# Keras variable names (the last part of the path) exempt from weight decay.
NO_DECAY_NAMES = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="tfsft")
class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` that keeps its weight-decay exclusions when saved and reloaded."""

    def __init__(self, *args, no_decay_names: tuple[str, ...] = NO_DECAY_NAMES, **kwargs):
        super().__init__(*args, **kwargs)
        self.no_decay_names = tuple(no_decay_names)
        self.exclude_from_weight_decay(var_names=[f"^{name}$" for name in self.no_decay_names])

    def get_config(self):
        return {**super().get_config(), "no_decay_names": list(self.no_decay_names)}


def adamw(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 2e-5,
    weight_decay: float = 0.01,
    clipnorm: float | None = 1.0,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
) -> AdamW:
    """AdamW with decoupled weight decay on weight matrices and embeddings only.

    ``clipnorm`` clips the global gradient norm (``None`` to turn clipping off).
    """
    return AdamW(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                 beta_2=beta_2, epsilon=epsilon, global_clipnorm=clipnorm)
