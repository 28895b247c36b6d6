"""The classifier's forward pass in plain TensorFlow ops, laid out for ONNX Runtime's fusions.

tf2onnx converts a Keras 3 / keras-hub BERT into a graph that ONNX Runtime's transformer optimizer
cannot fuse: Keras' LayerNormalization computes ``x * rsqrt(var + eps) * gamma + (beta - mean *
...)``, tf2onnx turns its mean into ``GlobalAveragePool``, and attention arrives as ``EinsumDense``
products. :func:`token_id_function` rebuilds the same computation from the model's weights in the
shapes the optimizer matches (the layout of Hugging Face's PyTorch BERT exports):

- LayerNorm: ``(x - mean) / sqrt(mean((x - mean) ** 2) + eps) * gamma + beta``, means over axis -1
  (``ReduceMean``; an axis of -1 keeps tf2onnx from rewriting it to ``GlobalAveragePool``);
- attention: per-projection ``MatMul`` + bias ``Add`` -> ``Reshape`` -> ``Transpose``, scores
  ``MatMul`` -> ``Mul(1/sqrt(d))`` -> ``Add(mask)`` -> ``Softmax`` -> ``MatMul`` -> ``Transpose`` ->
  ``Reshape``, with the mask ``(1 - float(mask[:, None, None, :])) * -10000``;
- GELU: ``x * 0.5 * (1 + erf(x / sqrt(2)))`` or the tanh form, whichever the model uses.

The result matches the Keras model to float rounding (the exporter checks every artifact against
Keras anyway) and the optimizer fuses it into ``Attention``, ``SkipLayerNormalization``,
``BiasGelu``/``FastGelu`` and ``LayerNormalization`` nodes.

>>> import keras_hub, numpy as np
>>> from tfsft.models.text_model import TextModel
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2,
...     hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
>>> model = TextModel(backbone, num_outputs=2)
>>> ids = np.array([[2, 5, 7, 3, 0]], "int32"); mask = (ids > 0).astype("int32")
>>> keras_logits = model.predict({"token_ids": ids, "padding_mask": mask,
...                               "segment_ids": 0 * ids}, verbose=0)
>>> logits = token_id_function(model)(ids, mask, 0 * ids)["logits"]
>>> bool(np.abs(logits.numpy() - keras_logits).max() < 1e-5)
True
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from exporters.savedmodel import ID_INPUTS

MASK_FILL = -10000.0


def _constant(variable, shape=None) -> np.ndarray:
    """A weight as a numpy array: it becomes a ``Const`` node (an ONNX initializer) in the graph."""
    value = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
    return value if shape is None else value.reshape(shape)


class _LayerNorm:
    def __init__(self, layer: keras.layers.LayerNormalization):
        self.gamma, self.beta = _constant(layer.gamma), _constant(layer.beta)
        self.epsilon = float(layer.epsilon)

    def __call__(self, x):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        centered = x - mean
        variance = tf.reduce_mean(tf.pow(centered, 2.0), axis=-1, keepdims=True)
        return centered / tf.sqrt(variance + self.epsilon) * self.gamma + self.beta


class _Dense:
    """``x @ kernel + bias`` with the kernel flattened to 2-D (EinsumDense kernels are 3-D)."""

    def __init__(self, layer, units_in: int, units_out: int):
        self.kernel = _constant(layer.kernel, (units_in, units_out))
        self.bias = _constant(layer.bias, (units_out,))

    def __call__(self, x):
        return tf.matmul(x, self.kernel) + self.bias


def _gelu_exact(x):
    return x * ((1.0 + tf.math.erf(x * math.sqrt(0.5))) * 0.5)


def _gelu_tanh(x):
    return x * ((1.0 + tf.tanh((x + 0.044715 * tf.pow(x, 3.0)) * math.sqrt(2.0 / math.pi))) * 0.5)


class _EncoderLayer:
    def __init__(self, layer, hidden: int, exact_gelu: bool):
        attention = layer._self_attention_layer
        # the layer's own heads and head size (a pruned layer has fewer heads of the same size)
        self.heads, self.head_size = int(attention._num_heads), int(attention._key_dim)
        width = self.heads * self.head_size
        self.query = _Dense(attention._query_dense, hidden, width)
        self.key = _Dense(attention._key_dense, hidden, width)
        self.value = _Dense(attention._value_dense, hidden, width)
        self.output = _Dense(attention._output_dense, width, hidden)
        self.attention_norm = _LayerNorm(layer._self_attention_layer_norm)
        intermediate = layer._feedforward_intermediate_dense.kernel.shape[-1]
        self.intermediate = _Dense(layer._feedforward_intermediate_dense, hidden, intermediate)
        self.feedforward_output = _Dense(layer._feedforward_output_dense, intermediate, hidden)
        self.feedforward_norm = _LayerNorm(layer._feedforward_layer_norm)
        self.gelu = _gelu_exact if exact_gelu else _gelu_tanh

    def _split_heads(self, x, batch, length):
        return tf.reshape(x, tf.stack([batch, length, self.heads, self.head_size]))

    def __call__(self, x, mask_bias, batch, length):
        query = tf.transpose(self._split_heads(self.query(x), batch, length), [0, 2, 1, 3])
        key = tf.transpose(self._split_heads(self.key(x), batch, length), [0, 2, 3, 1])
        value = tf.transpose(self._split_heads(self.value(x), batch, length), [0, 2, 1, 3])
        # Divided by a value computed from the key's shape: a constant divisor would be turned
        # into a Mul by TensorFlow's graph optimizer, and ONNX Runtime matches Div here.
        scale = tf.sqrt(tf.cast(tf.shape(key)[2], tf.float32))
        scores = tf.matmul(query, key) / scale + mask_bias
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), value)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]),
                             tf.stack([batch, length, self.heads * self.head_size]))
        x = self.attention_norm(self.output(context) + x)
        return self.feedforward_norm(self.feedforward_output(self.gelu(self.intermediate(x))) + x)


def token_id_function(model: keras.Model, outputs=None) -> tf.types.experimental.PolymorphicFunction:
    """``f(input_ids, attention_mask, token_type_ids) -> outputs(head output)`` for a
    ``TextModel`` (default outputs: ``{"logits": head output}``; per token for
    ``pooling="tokens"``).

    Inputs are int32 ``[batch, sequence]`` tensors; weights are captured as constants, so later
    changes to ``model`` are not seen. ``outputs`` is the task's ``export_outputs``.
    """
    outputs = outputs or (lambda raw: {"logits": raw})
    backbone = model.backbone
    hidden = backbone.hidden_dim
    token_table = _constant(backbone.get_layer("token_embedding").embeddings)
    position_table = _constant(backbone.get_layer("position_embedding").position_embeddings)
    segment_table = _constant(backbone.get_layer("segment_embedding").embeddings)
    embedding_norm = _LayerNorm(backbone.get_layer("embeddings_layer_norm"))
    layers = [_EncoderLayer(backbone.get_layer(f"transformer_layer_{i}"), hidden,
                            model.exact_gelu) for i in range(backbone.num_layers)]
    pooler = _Dense(backbone.get_layer("pooled_dense"), hidden, hidden)
    head = _Dense(model.get_layer("logits"), hidden, model.num_outputs)
    pooling = model.pooling

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in ID_INPUTS]

    @tf.function(input_signature=spec)
    def token_ids(input_ids, attention_mask, token_type_ids):
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        positions = tf.range(length)
        x = (tf.gather(token_table, input_ids) + tf.gather(position_table, positions)
             + tf.gather(segment_table, token_type_ids))
        x = embedding_norm(x)
        mask = tf.cast(tf.expand_dims(tf.expand_dims(attention_mask, 1), 1), tf.float32)
        mask_bias = (1.0 - mask) * MASK_FILL
        for layer in layers:
            x = layer(x, mask_bias, batch, length)
        if pooling == "mean":
            weights = tf.cast(attention_mask[:, :, tf.newaxis], tf.float32)
            pooled = (tf.reduce_sum(x * weights, axis=1)
                      / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0))
        elif pooling == "cls":
            pooled = x[:, 0, :]
        elif pooling == "tokens":  # per-token head: [batch, length, outputs]
            pooled = x
        else:
            pooled = tf.tanh(pooler(x[:, 0, :]))
        return outputs(head(pooled))

    return token_ids
