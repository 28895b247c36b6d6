"""The embedding model and its training wrapper.

The **encoder** is a :class:`~tfsft.models.text_model.TextModel`: the pretrained backbone, the
checkpoint's pooling (all-MiniLM-L6-v2: the masked mean) and a square dense layer that starts as
the identity (so the untuned encoder gives the checkpoint's own sentence vectors). The task's
serving outputs L2-normalise its output. It is what a run loads, predicts with and exports.

:class:`ContrastiveModel` trains it on pairs: it embeds the anchors (``anchor_ids``) and the
positives (``token_ids``; hard negatives ``negative_ids``) of a batch and returns

- ``in-batch``: the scaled cosine similarity of every anchor with every positive (and negative)
  of the batch, ``[batch, batch (+ batch)]``; :func:`in_batch_loss` is the cross-entropy of each
  anchor's own positive against all others (multiple-negatives ranking). Other rows with the
  same anchor or positive text are masked out, so a duplicate is never taken for a negative.
- ``triplet``: the cosine similarities anchor-positive and anchor-negative, ``[batch, 2]``;
  :func:`triplet_loss` is ``max(0, margin - (pos - neg))``.
- ``cosine``: the cosine similarity of each pair, ``[batch]``, fitted to the scaled score with
  the mean squared error.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfsft.models.text_model import TextModel

LOSSES = ("in-batch", "triplet", "cosine")
#: Added to the similarity of masked pairs (duplicates): far below any real one.
MASKED = -1e4


def identity_head(encoder: TextModel) -> TextModel:
    """``encoder`` with its dense head set to the identity (zero bias)."""
    head = encoder.get_layer("logits")
    kernel, bias = head.get_weights()
    head.set_weights([np.eye(*kernel.shape, dtype=kernel.dtype), np.zeros_like(bias)])
    return encoder


@keras.saving.register_keras_serializable(package="tfsft")
class ContrastiveModel(keras.Model):
    """Trains ``encoder`` on pairs with one of :data:`LOSSES` (see the module docstring)."""

    def __init__(self, encoder: TextModel, loss_kind: str = "in-batch", scale: float = 20.0,
                 **kwargs):
        super().__init__(**kwargs)
        if loss_kind not in LOSSES:
            raise ValueError(f"loss_kind must be one of {LOSSES}, got {loss_kind!r}")
        self.encoder = encoder
        self.loss_kind = loss_kind
        self.scale = float(scale)
        self.built = True  # its weights are the encoder's, which exist already

    def embed(self, token_ids, padding_mask, training=False):
        """L2-normalised float32 sentence vectors of token-id rows."""
        vectors = self.encoder({"token_ids": token_ids, "padding_mask": padding_mask,
                                "segment_ids": tf.zeros_like(token_ids)}, training=training)
        return tf.math.l2_normalize(tf.cast(vectors, tf.float32), axis=-1)

    def call(self, features, training=False):
        # a pair's row is its positive's tokens; the anchor's ride along (see the data role)
        anchors = self.embed(features["anchor_ids"], features["anchor_mask"], training)
        positives = self.embed(features["token_ids"], features["padding_mask"], training)
        if self.loss_kind == "cosine":
            return tf.reduce_sum(anchors * positives, axis=-1)
        negatives = (self.embed(features["negative_ids"], features["negative_mask"], training)
                     if "negative_ids" in features else None)
        if self.loss_kind == "triplet":
            return tf.stack([tf.reduce_sum(anchors * positives, -1),
                             tf.reduce_sum(anchors * negatives, -1)], axis=-1)
        candidates = positives if negatives is None else tf.concat([positives, negatives], 0)
        scores = self.scale * tf.matmul(anchors, candidates, transpose_b=True)
        return scores + self._duplicate_mask(features, negatives is not None)

    @staticmethod
    def _duplicate_mask(features, with_negatives: bool):
        """:data:`MASKED` where another row of the batch has the same anchor or positive."""
        anchor, positive = features["anchor_group"], features["positive_group"]
        same = tf.logical_or(tf.equal(anchor[:, None], anchor[None, :]),
                             tf.equal(positive[:, None], positive[None, :]))
        duplicate = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(anchor)[0],
                                                               dtype=tf.bool)))
        mask = tf.where(duplicate, MASKED, 0.0)
        if with_negatives:
            mask = tf.concat([mask, tf.zeros_like(mask)], axis=1)
        return mask

    def with_float32_compute(self) -> ContrastiveModel:
        """The same model computing in float32 (after mixed-precision training)."""
        return ContrastiveModel(self.encoder.with_float32_compute(), self.loss_kind,
                                self.scale, name=self.name)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "loss_kind": self.loss_kind, "scale": self.scale}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfsft")
def in_batch_loss(y_true, y_pred):
    """Cross-entropy of each anchor's own positive (the diagonal) against the batch."""
    labels = tf.range(tf.shape(y_pred)[0])
    return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)


@keras.saving.register_keras_serializable(package="tfsft")
class TripletLoss(keras.losses.Loss):
    """``max(0, margin - (cos(anchor, positive) - cos(anchor, negative)))``."""

    def __init__(self, margin: float = 0.5, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return tf.nn.relu(self.margin - (y_pred[:, 0] - y_pred[:, 1]))

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
