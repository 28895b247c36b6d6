"""Learning-rate schedules: linear warmup, then linear, cosine or exponential decay (or constant).

>>> schedule = WarmupDecay(1e-3, total_steps=100, warmup_steps=10, decay="linear")
>>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 55, 100)]
[0.0001, 0.0006, 0.001, 0.0005, 0.0]
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfsft.choices import LR_DECAYS as DECAYS


@keras.saving.register_keras_serializable(package="tfsft")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Warm up linearly from ``peak/warmup_steps`` to ``peak``, then decay to ``peak * final_ratio``.

    ``exponential`` decays by a constant factor per step so that the last step reaches
    ``peak * final_ratio`` (which must then be > 0; default 0.01 for it).
    """

    def __init__(self, peak_learning_rate: float, total_steps: int, warmup_steps: int = 0,
                 decay: str = "linear", final_ratio: float | None = None):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(max(warmup_steps, 0), total_steps))
        self.decay = decay
        default_ratio = 0.01 if decay == "exponential" else 0.0
        self.final_ratio = float(default_ratio if final_ratio is None else final_ratio)
        if decay == "exponential" and self.final_ratio <= 0:
            raise ValueError("exponential decay needs final_ratio > 0")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_learning_rate
        warmup = float(self.warmup_steps)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - warmup) / decay_steps, 0.0, 1.0)
        ratio = self.final_ratio
        if self.decay == "linear":
            factor = 1.0 - (1.0 - ratio) * progress
        elif self.decay == "cosine":
            factor = ratio + (1.0 - ratio) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "exponential":
            factor = ops.exp(math.log(ratio) * progress)
        else:
            factor = ops.ones_like(progress)
        if self.warmup_steps > 0:
            warming = peak * (step + 1.0) / warmup
            return ops.where(step < warmup, warming, peak * factor)
        return peak * factor

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "final_ratio": self.final_ratio,
        }
