"""Optimizers, learning-rate schedules, callbacks and the training run."""

from tfsft.training.callbacks import standard_callbacks
from tfsft.training.optimizers import adamw
from tfsft.training.schedules import WarmupDecay

__all__ = ["WarmupDecay", "adamw", "standard_callbacks"]
