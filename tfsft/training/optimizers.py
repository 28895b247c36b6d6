"""AdamW as BERT fine-tuning wants it: no weight decay on LayerNorm parameters and biases.

>>> optimizer = adamw(learning_rate=2e-5, weight_decay=0.01, clipnorm=1.0)
>>> optimizer.global_clipnorm
1.0
"""

from __future__ import annotations

import keras

# Keras variable names (the last part of the path) exempt from weight decay.
NO_DECAY_NAMES = ("bias", "gamma", "beta")


def adamw(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 2e-5,
    weight_decay: float = 0.01,
    clipnorm: float | None = 1.0,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
) -> keras.optimizers.AdamW:
    """AdamW with decoupled weight decay on weight matrices and embeddings only.

    ``clipnorm`` clips the global gradient norm (``None`` to turn clipping off).
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_names=[f"^{name}$" for name in NO_DECAY_NAMES])
    return optimizer
