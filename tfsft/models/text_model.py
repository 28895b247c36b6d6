"""A text model: BERT backbone, pooling (or none, for per-token heads), dropout, a dense head.

The head's ``num_outputs`` raw values are logits for (multi-label) classification and
standardized targets for regression; the task decides the loss (see ``tfsft.tasks``).

It is a plain ``keras.Model``: ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``save`` and
``keras.saving.load_model`` work as usual. Inputs are the dict of int32 tensors that
:func:`tfsft.data.pipeline.make_dataset` yields (``token_ids``, ``segment_ids``, ``padding_mask``).

>>> import keras_hub
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2,
...     hidden_dim=8, intermediate_dim=16, max_sequence_length=32)
>>> model = TextModel(backbone, num_outputs=3)
>>> model.output_shape
(None, 3)
>>> TextModel(backbone, num_outputs=5, pooling="tokens").output_shape
(None, None, 5)
"""

from __future__ import annotations

from pathlib import Path

import keras

from tfsft.choices import POOLINGS
from tfsft.models.checkpoints import load_backbone, use_exact_gelu


def register_training_objects() -> None:
    """Import (so register with Keras) tfsft's optimizer, schedule, losses and metrics, which
    a compiled model's saved config names: ``keras.saving.load_model`` of a run's model then
    works in a process that imported no more than the model's class."""
    import tfsft.models.metrics  # noqa: F401
    import tfsft.optimization.optimizers  # noqa: F401
    import tfsft.optimization.schedules  # noqa: F401


@keras.saving.register_keras_serializable(package="tfsft")
class MeanPooling(keras.layers.Layer):
    """Average of the token vectors where ``padding_mask`` is 1."""

    def call(self, sequence, padding_mask):
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, -1), sequence.dtype)
        total = keras.ops.sum(sequence * mask, axis=1)
        count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        return total / count


@keras.saving.register_keras_serializable(package="tfsft")
class TextModel(keras.Model):
    """Backbone + pooling + dropout + ``Dense(num_outputs)`` (float32 outputs).

    Args:
        backbone: a keras-hub BERT backbone (outputs ``sequence_output`` and ``pooled_output``).
        num_outputs: number of output values (labels, or regression targets).
        pooling: ``"mean"`` (masked mean of the last layer), ``"cls"`` (the ``[CLS]`` vector),
            ``"pooled"`` (BERT's tanh pooler on ``[CLS]``) or ``"tokens"`` (no pooling: the head
            runs on every token's vector; outputs ``[batch, length, num_outputs]``).
        dropout: dropout rate before the head.
        exact_gelu: use exact (erf) GELU in the backbone, as BERT checkpoints with
            ``hidden_act: gelu`` were trained.
    """

    def __init__(self, backbone: keras.Model, num_outputs: int, pooling: str = "mean",
                 dropout: float = 0.1, exact_gelu: bool = False, **kwargs):
        if pooling not in (*POOLINGS, "tokens"):
            raise ValueError(f"pooling must be one of {(*POOLINGS, 'tokens')}, got {pooling!r}")
        if exact_gelu:
            use_exact_gelu(backbone)
        inputs = backbone.input
        outputs = backbone(inputs)
        if pooling == "mean":
            pooled = MeanPooling(name="mean_pooling")(outputs["sequence_output"],
                                                      inputs["padding_mask"])
        elif pooling == "cls":
            pooled = outputs["sequence_output"][:, 0, :]
        elif pooling == "tokens":
            pooled = outputs["sequence_output"]
        else:
            pooled = outputs["pooled_output"]
        if pooling != "pooled":  # BERT's pooler is unused: keep it out of training
            backbone.get_layer("pooled_dense").trainable = False
        pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        logits = keras.layers.Dense(num_outputs, kernel_initializer=initializer,
                                    name="logits", dtype="float32")(pooled)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.num_outputs = num_outputs
        self.pooling = pooling
        self.dropout = dropout
        self.exact_gelu = exact_gelu

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, num_outputs: int, pooling: str = "mean",
                        dropout: float = 0.1, dtype: str | None = None, **kwargs) -> TextModel:
        """Build on a pretrained backbone: a checkpoint folder or a known name (``minilm-l6``).

        ``dtype`` is the backbone's Keras dtype policy (``"mixed_bfloat16"`` computes its matmuls
        in bfloat16); pooling and the head always compute in float32.
        """
        backbone, info = load_backbone(checkpoint, dtype=dtype)
        return cls(backbone, num_outputs, pooling=pooling, dropout=dropout,
                   exact_gelu=info["exact_gelu"], **kwargs)

    def with_float32_compute(self) -> TextModel:
        """The same model (same weights, compiled the same) computing in float32 throughout.

        For a model trained in mixed precision: predictions and exports are float32.
        """
        config = self.get_config()
        config["backbone"]["config"]["dtype"] = keras.saving.serialize_keras_object(
            keras.DTypePolicy("float32"))
        twin = type(self).from_config(config)
        twin.set_weights(self.get_weights())
        if self.compiled:
            twin.compile(optimizer=self.optimizer, loss=self.loss)
        return twin

    def compile_from_config(self, config):
        """Restore the compiled state (optimizer and its variables) when a saved model loads."""
        register_training_objects()
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_outputs": self.num_outputs,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "exact_gelu": self.exact_gelu,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
