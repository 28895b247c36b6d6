"""Knowledge distillation: a student trained on its teacher's outputs as well as the labels.

:class:`Distiller` wraps the student for ``fit``. Training batches carry, beside the task's own
target, the teacher's raw outputs (:data:`TEACHER_TARGET`) and whether the row has labels
(:data:`LABELLED_TARGET`: rows of unlabelled text learn from the teacher alone). The loss is

    ``alpha * T² * soft(teacher / T, student / T) + (1 - alpha) * task loss (labelled rows)``

where ``soft`` compares the outputs by their kind (:data:`SOFT_TARGET_KINDS`):

- ``classes``: KL divergence of the softmax over the last axis (per token for per-token
  outputs, on real tokens only);
- ``labels``: KL divergence of each label's sigmoid (multi-label), averaged over labels;
- ``positions``: KL divergence of the softmax over the sequence positions, per output column
  (span start and end), padding excluded;
- ``values``: mean squared difference (regression; ``T`` is not used).

Batches without the teacher's outputs (validation) get the task loss alone, so ``val_loss``
stays the task's. The compiled metrics see the labelled rows only.

>>> import numpy as np
>>> teacher = np.array([[2.0, 0.0]], np.float32)
>>> round(float(soft_loss("classes", teacher, teacher, None, 2.0)), 6)
0.0
>>> float(soft_loss("values", teacher, teacher + 1.0, None, 2.0))
1.0
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: Kinds of raw outputs a student can learn from (see the module docstring).
SOFT_TARGET_KINDS = ("classes", "labels", "positions", "values")
#: Target names of the teacher's outputs and of the labelled-row flag in training batches.
TEACHER_TARGET = "distillation_teacher"
LABELLED_TARGET = "distillation_labelled"
_MASKED = -1e9


def soft_loss(kind: str, teacher: Any, student: Any, padding_mask: Any,
              temperature: float) -> Any:
    """The mean soft loss of ``student`` outputs against ``teacher`` outputs of ``kind``;
    ``padding_mask`` (``[batch, length]``) marks real tokens for per-token outputs."""
    teacher = ops.cast(teacher, "float32")
    student = ops.cast(student, "float32")
    if kind == "values":
        return ops.mean(ops.square(student - teacher))
    scale = temperature * temperature
    per_token = len(student.shape) == 3
    mask = None
    if per_token and padding_mask is not None:
        mask = ops.cast(padding_mask, "float32")
    if kind == "labels":
        p = ops.sigmoid(teacher / temperature)
        logits = student / temperature
        # binary cross-entropy minus the teacher's entropy: the KL divergence per label
        cross = ops.maximum(logits, 0.0) - logits * p + ops.log1p(ops.exp(-ops.abs(logits)))
        entropy = -(p * ops.log(ops.maximum(p, 1e-12))
                    + (1 - p) * ops.log(ops.maximum(1 - p, 1e-12)))
        return scale * ops.mean(cross - entropy)
    axis = 1 if kind == "positions" else -1
    if kind == "positions" and mask is not None:  # no probability on padding positions
        hide = (1.0 - ops.expand_dims(mask, -1)) * _MASKED
        teacher, student = teacher + hide, student + hide
    log_p = ops.log_softmax(teacher / temperature, axis=axis)
    log_q = ops.log_softmax(student / temperature, axis=axis)
    divergence = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=axis)
    if kind == "positions" or mask is None:
        return scale * ops.mean(divergence)
    return scale * ops.sum(divergence * mask) / ops.maximum(ops.sum(mask), 1.0)


class Distiller(keras.Model):
    """Trains ``student`` on :func:`soft_loss` against the teacher's outputs and on the loss
    it is compiled with (see the module docstring). Compile it as the student would be
    compiled; after ``fit``, ``student`` is the trained model (the wrapper is not saved)."""

    def __init__(self, student: keras.Model, kind: str, temperature: float = 2.0,
                 alpha: float = 0.5, **kwargs):
        if kind not in SOFT_TARGET_KINDS:
            raise ValueError(f"kind must be one of {SOFT_TARGET_KINDS}, got {kind!r}")
        super().__init__(**kwargs)
        self.student = student
        self.kind = kind
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.built = student.built

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard, teacher, labelled = split_targets(y)
        if teacher is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        weights = _per_target(labelled if sample_weight is None else sample_weight * labelled,
                              hard)
        task_loss = super().compute_loss(x, hard, y_pred, weights, training=training)
        mask = x.get("padding_mask") if isinstance(x, dict) else None
        soft = soft_loss(self.kind, teacher, y_pred, mask, self.temperature)
        return self.alpha * soft + (1.0 - self.alpha) * task_loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        hard, teacher, labelled = split_targets(y)
        if teacher is not None:
            sample_weight = _per_target(
                labelled if sample_weight is None else sample_weight * labelled, hard)
        return super().compute_metrics(x, hard, y_pred, sample_weight)


def _per_target(weights: Any, targets: Any) -> Any:
    """Row weights ``[batch]`` shaped to broadcast over ``targets`` (``[batch, length]`` for
    per-token targets: Keras multiplies the weights with the ignored-target mask as they are)."""
    rank = len(targets.shape) if hasattr(targets, "shape") else 1
    while len(weights.shape) < rank:
        weights = ops.expand_dims(weights, -1)
    return weights


def split_targets(y: Any) -> tuple[Any, Any, Any]:
    """``(task targets, teacher outputs, labelled flags)`` of a batch's targets; the last two
    are ``None`` for batches without the teacher's outputs."""
    if not isinstance(y, dict) or TEACHER_TARGET not in y:
        return y, None, None
    hard = {k: v for k, v in y.items() if k not in (TEACHER_TARGET, LABELLED_TARGET)}
    task_targets = next(iter(hard.values())) if len(hard) == 1 else hard
    return task_targets, y[TEACHER_TARGET], ops.cast(y[LABELLED_TARGET], "float32")
