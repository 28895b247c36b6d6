"""A text classifier: :class:`~tfsft.models.text_model.TextModel` whose outputs are class logits.

>>> import keras_hub
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2,
...     hidden_dim=8, intermediate_dim=16, max_sequence_length=32)
>>> model = TextClassifier(backbone, num_classes=3)
>>> model.output_shape, model.loss
((None, 3), None)
"""

from __future__ import annotations

from pathlib import Path

import keras

from tfsft.models.text_model import POOLINGS, MeanPooling, TextModel

__all__ = ["POOLINGS", "MeanPooling", "TextClassifier"]


@keras.saving.register_keras_serializable(package="tfsft")
class TextClassifier(TextModel):
    """Backbone + pooling + dropout + ``Dense(num_classes)`` (logits), compiled by default with
    sparse categorical cross-entropy and accuracy."""

    def __init__(self, backbone: keras.Model, num_classes: int, pooling: str = "mean",
                 dropout: float = 0.1, exact_gelu: bool = False, **kwargs):
        super().__init__(backbone, num_classes, pooling=pooling, dropout=dropout,
                         exact_gelu=exact_gelu, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.num_outputs

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, num_classes: int, pooling: str = "mean",
                        dropout: float = 0.1, dtype: str | None = None,
                        **kwargs) -> TextClassifier:
        """Build on a pretrained backbone: a checkpoint folder or a known name (``minilm-l6``)."""
        return super().from_pretrained(checkpoint, num_classes, pooling=pooling, dropout=dropout,
                                       dtype=dtype, **kwargs)

    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        """Like ``keras.Model.compile``, with the loss and metric a classifier needs by default."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = config.pop("num_outputs")
        return config
