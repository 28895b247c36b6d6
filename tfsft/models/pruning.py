"""Structured pruning: attention heads and feed-forward neurons removed from a BERT text model.

Each head and each feed-forward neuron gets an importance: the first-order Taylor estimate of
the loss change were it removed, ``|Σ weight × gradient|`` over its weights, summed over
held-out batches (:func:`importance`), normalised within each layer. The least important
``heads`` and ``ffn`` fractions over the whole model go (at least one head and one neuron stay
in every layer), and :func:`pruned_copy` builds a model whose weight matrices are smaller: a
:class:`PrunedBertBackbone`, whose layers each have their own number of heads (of the
original head size) and of feed-forward neurons. The exported graphs are smaller dense ones.

>>> import keras_hub, numpy as np
>>> from tfsft.models.text_model import TextModel
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=4,
...     hidden_dim=16, intermediate_dim=32, max_sequence_length=16)
>>> model = TextModel(backbone, num_outputs=2)
>>> scores = {"heads": np.arange(8.0).reshape(2, 4), "ffn": np.ones((2, 32))}
>>> pruned = pruned_copy(model, scores, heads=0.5, ffn=0.25)
>>> pruned.backbone.layer_heads, pruned.backbone.layer_intermediate_dims  # layer 0 keeps its best
([1, 4], [16, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras
import keras_hub
import numpy as np
from keras.layers import ReversibleEmbedding

from tfsft.errors import ConfigError

_TransformerEncoder = keras_hub.layers.TransformerEncoder
_PositionEmbedding = keras_hub.layers.PositionEmbedding


@keras.saving.register_keras_serializable(package="tfsft")
class PrunedTransformerEncoder(_TransformerEncoder):
    """keras-hub's post-norm transformer encoder layer with a head size of its own
    (``head_dim``), not ``hidden_dim // num_heads``: the layer keeps the heads left after
    pruning at their original size."""

    def __init__(self, intermediate_dim: int, num_heads: int, head_dim: int, **kwargs):
        super().__init__(intermediate_dim=intermediate_dim, num_heads=num_heads, **kwargs)
        self.head_dim = head_dim

    def build(self, inputs_shape):
        hidden = inputs_shape[-1]
        dtype = self.dtype_policy

        def initializers() -> dict[str, Any]:  # BERT's; the weights are copied in anyway
            return {"kernel_initializer": keras.initializers.TruncatedNormal(stddev=0.02),
                    "bias_initializer": "zeros"}

        self._self_attention_layer = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=self.head_dim, output_shape=hidden,
            dropout=self.dropout, dtype=dtype, name="self_attention_layer", **initializers())
        self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        self._self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="self_attention_layer_norm")
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=dtype, name="self_attention_dropout")
        self._feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="feedforward_layer_norm")
        self._feedforward_layer_norm.build(inputs_shape)
        self._feedforward_intermediate_dense = keras.layers.Dense(
            self.intermediate_dim, activation=self.activation, dtype=dtype,
            name="feedforward_intermediate_dense", **initializers())
        self._feedforward_intermediate_dense.build(inputs_shape)
        self._feedforward_output_dense = keras.layers.Dense(
            hidden, dtype=dtype, name="feedforward_output_dense", **initializers())
        self._feedforward_output_dense.build((*inputs_shape[:-1], self.intermediate_dim))
        self._feedforward_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=dtype, name="feedforward_dropout")
        self.built = True

    def get_config(self):
        return {**super().get_config(), "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="tfsft")
class PrunedBertBackbone(keras_hub.models.Backbone):
    """A BERT backbone (the layers and names of keras-hub's ``BertBackbone``) whose transformer
    layers each have their own number of heads (``layer_heads``, each of ``head_dim``) and of
    feed-forward neurons (``layer_intermediate_dims``)."""

    def __init__(self, vocabulary_size: int, hidden_dim: int, head_dim: int,
                 layer_heads: list[int], layer_intermediate_dims: list[int],
                 dropout: float = 0.1, max_sequence_length: int = 512, num_segments: int = 2,
                 dtype: Any = None, **kwargs):
        if len(layer_heads) != len(layer_intermediate_dims):
            raise ValueError("layer_heads and layer_intermediate_dims differ in length")
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.token_embedding = ReversibleEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=initializer, dtype=dtype,
            name="token_embedding")
        self.position_embedding = _PositionEmbedding(
            max_sequence_length, initializer=initializer, dtype=dtype,
            name="position_embedding")
        self.segment_embedding = keras.layers.Embedding(
            num_segments, hidden_dim, embeddings_initializer=initializer, dtype=dtype,
            name="segment_embedding")
        self.transformer_layers = [
            PrunedTransformerEncoder(
                intermediate_dim=width, num_heads=heads, head_dim=head_dim,
                activation=keras_hub.src.utils.keras_utils.gelu_approximate, dropout=dropout,
                layer_norm_epsilon=1e-12, kernel_initializer=initializer, dtype=dtype,
                name=f"transformer_layer_{i}")
            for i, (heads, width) in enumerate(zip(layer_heads, layer_intermediate_dims,
                                                   strict=True))]
        self.pooled_dense = keras.layers.Dense(hidden_dim, kernel_initializer=initializer,
                                               activation="tanh", dtype=dtype,
                                               name="pooled_dense")
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
                  for name in ("token_ids", "segment_ids", "padding_mask")}
        tokens = self.token_embedding(inputs["token_ids"])
        x = keras.layers.Add(dtype=dtype, name="embeddings_add")(
            (tokens, self.position_embedding(tokens),
             self.segment_embedding(inputs["segment_ids"])))
        x = keras.layers.LayerNormalization(epsilon=1e-12, dtype=dtype,
                                            name="embeddings_layer_norm")(x)
        x = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")(x)
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=inputs["padding_mask"])
        super().__init__(inputs=inputs,
                         outputs={"sequence_output": x,
                                  "pooled_output": self.pooled_dense(x[:, 0, :])},
                         dtype=dtype, **kwargs)
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.head_dim = head_dim
        self.layer_heads = list(layer_heads)
        self.layer_intermediate_dims = list(layer_intermediate_dims)
        self.num_layers = len(layer_heads)
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim, "head_dim": self.head_dim,
                "layer_heads": self.layer_heads,
                "layer_intermediate_dims": self.layer_intermediate_dims,
                "dropout": self.dropout, "max_sequence_length": self.max_sequence_length,
                "num_segments": self.num_segments}


def _encoder(model: keras.Model, index: int) -> Any:
    return model.backbone.get_layer(f"transformer_layer_{index}")


def importance(model: keras.Model, batches: Iterable[tuple[Any, Any]],
               loss_of: Callable[[Any, Any, Any], Any]) -> dict[str, np.ndarray]:
    """Per-layer importance of each head (``heads``: ``[layers, heads]``) and feed-forward
    neuron (``ffn``: ``[layers, neurons]``): ``|Σ weight × gradient|`` of the loss
    ``loss_of(features, targets, outputs)`` over its weights, summed over ``batches``."""
    import tensorflow as tf

    layers = model.backbone.num_layers
    watched = []
    for i in range(layers):
        attention = _encoder(model, i)._self_attention_layer
        dense = _encoder(model, i)
        watched.append([attention._query_dense.kernel, attention._query_dense.bias,
                        attention._key_dense.kernel, attention._key_dense.bias,
                        attention._value_dense.kernel, attention._value_dense.bias,
                        attention._output_dense.kernel,
                        dense._feedforward_intermediate_dense.kernel,
                        dense._feedforward_intermediate_dense.bias,
                        dense._feedforward_output_dense.kernel])
    flat = [v for group in watched for v in group]
    heads = [0.0] * layers
    ffn = [0.0] * layers
    for features, targets in batches:
        with tf.GradientTape() as tape:
            outputs = model(features, training=False)
            loss = loss_of(features, targets, outputs)
        gradients = tape.gradient(loss, flat)
        for i in range(layers):
            part = gradients[i * 10:(i + 1) * 10]
            products = [np.asarray(v.numpy(), np.float64) * np.asarray(g, np.float64)
                        for v, g in zip(watched[i], part, strict=True)]
            q, qb, k, kb, v, vb, o, up, up_b, down = products
            heads[i] = heads[i] + (q.sum(axis=(0, 2)) + qb.sum(axis=1) + k.sum(axis=(0, 2))
                                   + kb.sum(axis=1) + v.sum(axis=(0, 2)) + vb.sum(axis=1)
                                   + o.sum(axis=(1, 2)))
            ffn[i] = ffn[i] + up.sum(axis=0) + up_b + down.sum(axis=1)
    return {"heads": _normalised([np.abs(h) for h in heads]),
            "ffn": _normalised([np.abs(f) for f in ffn])}


def _normalised(per_layer: list[np.ndarray]) -> np.ndarray:
    """Each layer's scores divided by their L2 norm, so that layers compare."""
    return np.stack([s / max(float(np.linalg.norm(s)), 1e-12) for s in per_layer])


def _kept(scores: np.ndarray, fraction: float) -> list[np.ndarray]:
    """Per layer, the sorted indices that stay when the ``fraction`` of all units with the
    lowest scores goes (every layer keeps its best unit)."""
    drop = int(round(fraction * scores.size))
    order = np.argsort(scores, axis=None, kind="stable")
    removed = np.zeros(scores.size, bool)
    removed[order[:drop]] = True
    removed = removed.reshape(scores.shape)
    for i, row in enumerate(removed):
        if row.all():
            row[int(np.argmax(scores[i]))] = False
    return [np.flatnonzero(~row) for row in removed]


def check_shares(heads: float, ffn: float) -> None:
    """Refuse shares of heads or feed-forward neurons to remove outside [0, 1)."""
    for name, value in (("heads", heads), ("ffn", ffn)):
        if not 0 <= value < 1:
            raise ConfigError(f"--{name} is the share of units to remove, from 0 up to (not "
                              f"including) 1; got {value}")


def pruned_copy(model: keras.Model, scores: dict[str, np.ndarray], heads: float,
                ffn: float, dtype: str | None = None) -> keras.Model:
    """A copy of text ``model`` without the ``heads`` and ``ffn`` fractions of its least
    important heads and feed-forward neurons (``scores`` from :func:`importance`), its weight
    matrices sliced to the units that stay."""
    check_shares(heads, ffn)
    backbone = model.backbone
    layers = backbone.num_layers
    head_dim = _encoder(model, 0)._self_attention_layer._key_dim
    keep_heads = _kept(scores["heads"], heads)
    keep_ffn = _kept(scores["ffn"], ffn)
    config = model.get_config()
    settings = config["backbone"]["config"]
    pruned_settings = {
        "vocabulary_size": settings["vocabulary_size"], "hidden_dim": settings["hidden_dim"],
        "head_dim": int(head_dim), "layer_heads": [int(len(k)) for k in keep_heads],
        "layer_intermediate_dims": [int(len(k)) for k in keep_ffn],
        "dropout": settings["dropout"], "max_sequence_length": settings["max_sequence_length"],
        "num_segments": settings["num_segments"], "name": settings.get("name"),
        "dtype": settings["dtype"] if dtype is None else keras.saving.serialize_keras_object(
            keras.DTypePolicy(dtype))}
    config["backbone"] = keras.saving.serialize_keras_object(
        PrunedBertBackbone(**pruned_settings))
    pruned = type(model).from_config(config)
    _copy_sliced(model, pruned, keep_heads, keep_ffn, layers)
    return pruned


def _copy_sliced(model: keras.Model, pruned: keras.Model, keep_heads: list[np.ndarray],
                 keep_ffn: list[np.ndarray], layers: int) -> None:
    for name in ("token_embedding", "position_embedding", "segment_embedding",
                 "embeddings_layer_norm", "pooled_dense"):
        pruned.backbone.get_layer(name).set_weights(model.backbone.get_layer(name).get_weights())
    for layer in pruned.layers:
        if layer is not pruned.backbone and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    for i in range(layers):
        source, target = _encoder(model, i), _encoder(pruned, i)
        h, f = keep_heads[i], keep_ffn[i]
        attention, new_attention = source._self_attention_layer, target._self_attention_layer
        for part in ("_query_dense", "_key_dense", "_value_dense"):
            kernel, bias = getattr(attention, part).get_weights()
            getattr(new_attention, part).set_weights([kernel[:, h, :], bias[h, :]])
        kernel, bias = attention._output_dense.get_weights()
        new_attention._output_dense.set_weights([kernel[h], bias])
        up_kernel, up_bias = source._feedforward_intermediate_dense.get_weights()
        target._feedforward_intermediate_dense.set_weights([up_kernel[:, f], up_bias[f]])
        down_kernel, down_bias = source._feedforward_output_dense.get_weights()
        target._feedforward_output_dense.set_weights([down_kernel[f], down_bias])
        for norm in ("_self_attention_layer_norm", "_feedforward_layer_norm"):
            getattr(target, norm).set_weights(getattr(source, norm).get_weights())
