"""Callbacks, precision, distribution and the training run (imported on first use)."""

from importlib import import_module

_EXPORTS = {"standard_callbacks": "tfsft.training.callbacks", "adamw": "tfsft.optimization.optimizers",
            "WarmupDecay": "tfsft.optimization.schedules"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfsft.training' has no attribute {name!r}")
