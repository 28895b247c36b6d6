"""Backbones loaded from local checkpoints, and task models built on them."""

from tfsft.models.checkpoints import load_backbone, resolve_checkpoint
from tfsft.models.text_classifier import MeanPooling, TextClassifier

__all__ = ["MeanPooling", "TextClassifier", "load_backbone", "resolve_checkpoint"]
