"""tf.data input pipelines: tokenize once, bucket by length, pad each batch to its own longest row.

>>> import numpy as np
>>> from tfsft.data.examples import TextClassificationData
>>> from tfsft.tokenization import WordPieceTokenizer
>>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"])
>>> data = TextClassificationData(["good", "bad bad", "good"], None,
...                               np.array([1, 0, 1], np.int32), ("neg", "pos"))
>>> encoded = encode(tokenizer, data, max_length=16)
>>> dataset = make_dataset(encoded, batch_size=2)
>>> [x["token_ids"].shape.as_list() for x, y in dataset]
[[2, 4], [1, 3]]
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfsft.data.examples import TextClassificationData
from tfsft.tokenization import WordPieceTokenizer

_ENCODE_CHUNK = 8192


@dataclass
class EncodedData:
    """Token ids of a whole data set, tokenized once: flat arrays plus row lengths."""

    token_ids: np.ndarray  # int32, all rows concatenated
    segment_ids: np.ndarray  # int32, same shape as token_ids
    lengths: np.ndarray  # int32, tokens per row
    label_ids: np.ndarray | None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def rows(self, start: int, stop: int) -> list[list[int]]:
        """Token ids of rows ``start:stop`` as lists (for inspection and tests)."""
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        return [self.token_ids[offsets[i]:offsets[i + 1]].tolist() for i in range(start, stop)]


def encode(tokenizer: WordPieceTokenizer, data: TextClassificationData,
           max_length: int) -> EncodedData:
    """Tokenize every example once (in chunks, with the graph tokenizer)."""
    ids, segments, lengths = [], [], []
    for start in range(0, len(data), _ENCODE_CHUNK):
        stop = start + _ENCODE_CHUNK
        pairs = None if data.text_pairs is None else data.text_pairs[start:stop]
        encoded = tokenizer.encode(data.texts[start:stop], pairs, max_length=max_length)
        mask = encoded["padding_mask"].numpy().astype(bool)
        ids.append(encoded["token_ids"].numpy()[mask])  # row-major: rows stay in order
        segments.append(encoded["segment_ids"].numpy()[mask])
        lengths.append(mask.sum(axis=1).astype(np.int32))
    return EncodedData(
        token_ids=np.concatenate(ids).astype(np.int32),
        segment_ids=np.concatenate(segments).astype(np.int32),
        lengths=np.concatenate(lengths),
        label_ids=data.label_ids,
    )


def bucket_boundaries(max_length: int) -> list[int]:
    """Length bucket edges up to ``max_length``: fine for short texts, coarser for long ones."""
    edges = [8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 448, 512]
    return [e for e in edges if e < max_length]


def count_batches(lengths: np.ndarray, batch_size: int, boundaries: list[int]) -> int:
    """How many batches :func:`make_dataset` yields (each bucket emits its remainder once)."""
    buckets = np.searchsorted(np.asarray(boundaries), lengths, side="right")
    counts = np.bincount(buckets, minlength=len(boundaries) + 1)
    return int(np.sum(-(-counts // batch_size)))


def make_dataset(
    encoded: EncodedData,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    boundaries: list[int] | None = None,
) -> tf.data.Dataset:
    """A dataset of ``(features, label_id)`` batches with dynamic padding and length bucketing.

    Features are ``token_ids``, ``segment_ids`` and ``padding_mask`` (int32 ``[batch, length]``),
    where ``length`` is the longest row of that batch. With ``shuffle``, the order changes every
    epoch but is the same for the same ``seed``. Batches come out grouped by length, so use
    :func:`predict_logits` (which keeps the input order) for predictions.
    """
    if boundaries is None:
        boundaries = bucket_boundaries(int(encoded.lengths.max()) + 1)
    labels = encoded.label_ids if encoded.label_ids is not None else np.zeros(len(encoded), np.int32)
    dataset = _rows(encoded, np.arange(len(encoded)), labels).cache()
    if shuffle:
        dataset = dataset.shuffle(len(encoded), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda ids, *_: tf.shape(ids)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], [None], [None], []),
        pad_to_bucket_boundary=False,
        drop_remainder=False,
    )
    dataset = dataset.map(_to_features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    total = count_batches(encoded.lengths, batch_size, boundaries)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(total))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _rows(encoded: EncodedData, order: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """Rows ``(token_ids, segment_ids, mask, label)`` in ``order``, sliced from the flat arrays."""
    starts = np.concatenate([[0], np.cumsum(encoded.lengths)[:-1]]).astype(np.int64)
    token_ids = tf.constant(encoded.token_ids)
    segment_ids = tf.constant(encoded.segment_ids)

    def row(start, length, label):
        ids = token_ids[start:start + length]
        return ids, segment_ids[start:start + length], tf.ones_like(ids), label

    slices = (starts[order], encoded.lengths[order].astype(np.int64), labels[order])
    return tf.data.Dataset.from_tensor_slices(slices).map(row)


def _to_features(token_ids, segment_ids, mask, label):
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": mask}, label


def make_ordered_batches(encoded: EncodedData, batch_size: int) -> tuple[tf.data.Dataset, np.ndarray]:
    """Batches of rows sorted by length (little padding) and the order to undo the sort."""
    order = np.argsort(encoded.lengths, kind="stable")
    dataset = _rows(encoded, order, np.zeros(len(encoded), np.int32))
    dataset = dataset.padded_batch(batch_size).map(_to_features).map(lambda features, _: features)
    return dataset.prefetch(tf.data.AUTOTUNE), np.argsort(order, kind="stable")


def predict_logits(model: keras.Model, encoded: EncodedData, batch_size: int = 64,
                   verbose: int | str = "auto") -> np.ndarray:
    """Logits for every row of ``encoded``, in input order."""
    dataset, restore = make_ordered_batches(encoded, batch_size)
    logits = model.predict(dataset, verbose=verbose)
    return np.asarray(logits)[restore]
