"""AdamW as BERT fine-tuning wants it: no weight decay on LayerNorm parameters and biases.

On TensorFlow each variable is updated by one fused ``ResourceApplyAdam`` kernel (the same
arithmetic as ``keras.optimizers.AdamW``), instead of a dozen element-wise ops: the training step
traces faster and spends less time reading and writing the optimizer state. Sparse gradients
(embedding lookups) are summed into dense ones first, so a token that occurs many times in a batch
counts once in the second moment and the clipping norm, with its summed gradient. Under a
``tf.distribute`` strategy with several replicas the gradients are summed over replicas before
they are clipped, so a run on N replicas takes the same steps as one process with the same
global batch.

>>> optimizer = adamw(learning_rate=2e-5, weight_decay=0.01, clipnorm=1.0)
>>> optimizer.global_clipnorm
1.0
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Keras variable names (the last part of the path) exempt from weight decay.
NO_DECAY_NAMES = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="tfsft")
class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` that keeps its weight-decay exclusions when saved and reloaded."""

    def __init__(self, *args, no_decay_names: tuple[str, ...] = NO_DECAY_NAMES, **kwargs):
        super().__init__(*args, **kwargs)
        self.no_decay_names = tuple(no_decay_names)
        # Keras matches the pattern against the Keras name ("gamma") or, in its TensorFlow
        # weight-decay path, the tf.Variable name ("gamma:0"): accept both.
        self.exclude_from_weight_decay(
            var_names=[rf"^{name}(:\d+)?$" for name in self.no_decay_names])

    def get_config(self):
        return {**super().get_config(), "no_decay_names": list(self.no_decay_names)}

    def _use_weight_decay(self, variable):
        # Under a tf.distribute strategy Keras asks about each replica's copy, named by its
        # path ("layer_norm/gamma:0", "layer_norm/gamma/replica_1:0"), which the patterns
        # above do not match: LayerNorm and biases would be decayed.
        name = variable.name.split(":")[0].split("/")
        if len(name) > 1 and name[-1].startswith("replica_"):
            name = name[:-1]
        if name[-1] in self.no_decay_names:
            return False
        return super()._use_weight_decay(variable)

    def _fused(self) -> bool:
        """Whether the fused kernels apply: TensorFlow, no AMSGrad, no ``tf.distribute`` strategy."""
        return keras.backend.backend() == "tensorflow" and not self.amsgrad and (
            not tf.distribute.has_strategy())

    def _backend_apply_gradients(self, grads, trainable_variables):
        if _replicas() == 1:  # with several replicas: after summing them (_sum_over_replicas)
            grads = [_dense(g) for g in grads]
        return super()._backend_apply_gradients(grads, trainable_variables)

    def _clip_gradients(self, grads):
        grads = _sum_over_replicas(grads)
        if not (self._fused() and self.global_clipnorm) or self.clipnorm or self.clipvalue:
            return super()._clip_gradients(grads)
        # Keras's clip_by_global_norm, with each squared norm taken in one pass (l2_loss).
        present = [g for g in grads if g is not None]
        norm = tf.sqrt(2.0 * tf.add_n([tf.nn.l2_loss(tf.cast(g, tf.float32)) for g in present]))
        limit = tf.cast(self.global_clipnorm, tf.float32)
        scale = limit * tf.minimum(1.0 / norm, 1.0 / limit) + (norm - norm)  # NaN stays NaN
        return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]

    def _all_reduce_sum_gradients(self, grads_and_vars):
        if _replicas() > 1:  # summed over replicas before clipping (see _sum_over_replicas)
            return grads_and_vars
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None or not self._fused():
            return super()._apply_weight_decay(variables)
        decay = tf.cast(self.learning_rate, tf.float32) * tf.cast(self.weight_decay, tf.float32)
        for variable in variables:
            if self._use_weight_decay(variable):
                value = _tf_variable(variable)
                value.assign_sub(value * tf.cast(decay, value.dtype))
        return None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._fused():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        step = tf.cast(self.iterations + 1, tf.float32)
        scalars = {"lr": tf.cast(learning_rate, tf.float32), "beta1": self.beta_1,
                   "beta2": self.beta_2, "epsilon": self.epsilon,
                   "beta1_power": tf.pow(tf.cast(self.beta_1, tf.float32), step),
                   "beta2_power": tf.pow(tf.cast(self.beta_2, tf.float32), step)}
        for grad, variable in zip(grads, trainable_variables, strict=True):
            index = self._get_variable_index(variable)
            value = _tf_variable(variable)
            tf.raw_ops.ResourceApplyAdam(
                var=value.handle, m=_tf_variable(self._momentums[index]).handle,
                v=_tf_variable(self._velocities[index]).handle,
                grad=tf.cast(grad, value.dtype),
                **{name: tf.cast(x, value.dtype) for name, x in scalars.items()})
        return None


@keras.saving.register_keras_serializable(package="tfsft")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's loss scaling (for ``mixed_float16``) with one decision for all replicas: a step
    is skipped when any replica's gradients overflowed. Keras decides per replica, and the
    replicas that apply the step would then wait forever for the others in the gradient sum."""

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        if _replicas() == 1:
            return finite
        overflowed = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(overflowed, 0.0)


def _replicas() -> int:
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def _sum_over_replicas(grads: list) -> list:
    """Each replica's gradients summed over all replicas (each replica's loss is already divided
    by their number), before they are clipped: the clipped norm is then the global batch's, as
    in one process. Keras sums them after clipping, so each replica would clip its own share,
    and training would differ with the number of replicas."""
    if _replicas() == 1:
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    summed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    grads = list(grads)
    for i, value in zip(present, summed, strict=True):
        # rows of a sparse gradient summed per token, as the single-process path does
        grads[i] = _dense(value)
    return grads


def _dense(grad):
    """A sparse gradient (an embedding lookup's) as a dense one, rows of a repeated token summed:
    Keras's AdamW would otherwise square each repeat on its own and update only the rows in the
    batch, where BERT fine-tuning (and tfsft's fused update) uses the dense Adam update."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _tf_variable(variable: keras.Variable | tf.Variable) -> tf.Variable:
    return variable.value if isinstance(variable, keras.Variable) else variable


def adamw(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 2e-5,
    weight_decay: float = 0.01,
    clipnorm: float | None = 1.0,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    gradient_accumulation_steps: int | None = None,
) -> AdamW:
    """AdamW with decoupled weight decay on weight matrices and embeddings only.

    ``clipnorm`` clips the global gradient norm (``None`` to turn clipping off);
    ``gradient_accumulation_steps`` (>= 2) updates with the mean gradient of that many batches.
    """
    return AdamW(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                 beta_2=beta_2, epsilon=epsilon, global_clipnorm=clipnorm,
                 gradient_accumulation_steps=gradient_accumulation_steps)
