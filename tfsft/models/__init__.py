"""Backbones loaded from local checkpoints, and task models built on them."""

from tfsft.models.checkpoints import load_backbone, resolve_checkpoint
from tfsft.models.text_model import MeanPooling, TextModel

__all__ = ["MeanPooling", "TextModel", "load_backbone", "resolve_checkpoint"]
