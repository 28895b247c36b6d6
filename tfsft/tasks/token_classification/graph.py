"""Entity spans decoded inside the exported graph (TensorFlow ops only, for the SavedModel).

:func:`entity_outputs` turns per-token logits of raw texts into per-piece tags and character
offsets and into entity spans, decoded as
:func:`tfsft.tasks.token_classification.tags.spans` does (lenient: a tag of another type, a
begin or a single tag starts a new entity). Outputs are dense, padded per batch:

- ``tags`` string ``[batch, pieces]``: the tag of each unit's first piece ("" for continuation
  pieces and padding); ``token_starts`` / ``token_ends`` int32 character offsets (-1: padding);
- ``entity_types`` string, ``entity_texts`` string, ``entity_starts`` / ``entity_ends`` int32
  (character offsets, end exclusive), ``entity_scores`` float32 ``[batch, entities]``;
  ``entity_count`` int32 ``[batch]``; ``truncated`` bool ``[batch]`` (the text had more than
  ``max_length - 2`` word pieces; the model saw only the first ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfsft.tasks.token_classification import tags as tag_schemes

_CODES = {"O": 0, "B": 1, "I": 2, "M": 2, "E": 3, "L": 3, "S": 4, "U": 4}
_BIG = np.int32(2 ** 30)


def label_tables(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Prefix code (O 0, begin 1, inside 2, end 3, single 4) and type id of every label."""
    types = tag_schemes.entity_types(labels)
    prefixes, type_ids = [], []
    for label in labels:
        prefix, kind = tag_schemes.split_tag(label)
        prefixes.append(_CODES.get(prefix, 2))
        type_ids.append(types.index(kind) if kind is not None else -1)
    return np.array(prefixes, np.int32), np.array(type_ids, np.int32), types


def _shift(values: tf.Tensor, fill) -> tf.Tensor:
    """``values`` moved one place later (``fill`` first)."""
    return tf.concat([tf.fill([1], tf.cast(fill, values.dtype)), values[:-1]], axis=0)


def _dense(values: tf.Tensor, rows: tf.Tensor, nrows: tf.Tensor, default) -> tf.Tensor:
    return tf.RaggedTensor.from_value_rowids(values, rows, nrows=nrows).to_tensor(
        default_value=tf.cast(default, values.dtype))


def entity_outputs(raw: tf.Tensor, texts: tf.Tensor, tokenizer, max_length: int,
                   labels: Sequence[str], scheme: str) -> dict[str, tf.Tensor]:
    """See the module docstring; ``raw`` is ``[batch, [CLS] + pieces + [SEP], tags]``."""
    del scheme  # every scheme decodes by the prefix codes
    prefix_table, type_table, types = label_tables(labels)
    batch = tf.shape(texts, out_type=tf.int64)[0]
    ids, byte_starts, byte_ends = tokenizer.wordpieces_with_offsets(texts)
    width = max_length - 2
    truncated = ids.row_lengths() > width
    ids, byte_starts, byte_ends = ids[:, :width], byte_starts[:, :width], byte_ends[:, :width]
    counts = ids.row_lengths()

    # character offsets: how many characters start before each piece's byte offsets
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
    char_bytes = tf.cast(char_bytes, tf.int32).to_tensor(default_value=_BIG)
    char_bytes = tf.concat([char_bytes, tf.fill([batch, 1], _BIG)], axis=1)
    starts = tf.searchsorted(char_bytes, byte_starts.to_tensor(default_value=0), side="left")
    ends = tf.searchsorted(char_bytes, byte_ends.to_tensor(default_value=0), side="left")
    starts = tf.RaggedTensor.from_tensor(tf.cast(starts, tf.int32), lengths=counts)
    ends = tf.RaggedTensor.from_tensor(tf.cast(ends, tf.int32), lengths=counts)

    piece_logits = tf.RaggedTensor.from_tensor(raw[:, 1:-1, :], lengths=counts)
    probabilities = tf.nn.softmax(piece_logits.values, axis=-1)
    tag_id = tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)
    tag_probability = tf.reduce_max(probabilities, axis=-1)
    piece_row = ids.value_rowids()
    first_in_row = piece_row != _shift(piece_row, -1)
    continuation = tf.gather(tf.constant(tokenizer.continuation_ids), ids.values)
    unit_start = tf.logical_or(tf.logical_not(continuation), first_in_row)

    # one value per unit (the pieces of a word): tag, probability, character span
    positions = tf.where(unit_start)[:, 0]
    unit_of_piece = tf.cumsum(tf.cast(unit_start, tf.int32)) - 1
    unit_count = tf.shape(positions)[0]
    unit_row = tf.gather(piece_row, positions)
    unit_tag = tf.gather(tag_id, positions)
    unit_probability = tf.gather(tag_probability, positions)
    unit_start_char = tf.gather(starts.values, positions)
    unit_end_char = tf.math.unsorted_segment_max(ends.values, unit_of_piece, unit_count)
    prefix = tf.gather(tf.constant(prefix_table), unit_tag)
    kind = tf.gather(tf.constant(type_table), unit_tag)

    # lenient decoding: where entities begin, and which entity each unit belongs to
    row_start = unit_row != _shift(unit_row, -1)
    previous_kind, previous_prefix = _shift(kind, -1), _shift(prefix, 0)
    open_before = (~row_start & (previous_kind >= 0) & (previous_prefix != 3)
                   & (previous_prefix != 4))
    inside = kind >= 0
    begins = inside & (~open_before | (kind != previous_kind) | (prefix == 1) | (prefix == 4))
    entity_of_unit = tf.cumsum(tf.cast(begins, tf.int32)) - 1
    entity_count = tf.reduce_sum(tf.cast(begins, tf.int32))
    members = tf.boolean_mask(entity_of_unit, inside)
    entity_row = tf.boolean_mask(unit_row, begins)
    entity_kind = tf.boolean_mask(kind, begins)
    entity_start = tf.boolean_mask(unit_start_char, begins)
    entity_end = tf.math.unsorted_segment_max(tf.boolean_mask(unit_end_char, inside), members,
                                              entity_count)
    entity_score = tf.math.unsorted_segment_mean(tf.boolean_mask(unit_probability, inside),
                                                 members, entity_count)
    type_names = tf.constant(types if types else [""])
    entity_type = tf.gather(type_names, tf.maximum(entity_kind, 0))
    entity_text = tf.strings.substr(tf.gather(texts, entity_row), entity_start,
                                    entity_end - entity_start, unit="UTF8_CHAR")

    label_names = tf.constant(list(labels))
    piece_tags = tf.where(unit_start, tf.gather(label_names, tag_id), "")
    per_piece = tf.RaggedTensor.from_row_lengths(piece_tags, counts)
    return {
        "tags": per_piece.to_tensor(default_value=""),
        "token_starts": starts.to_tensor(default_value=-1),
        "token_ends": ends.to_tensor(default_value=-1),
        "entity_types": _dense(entity_type, entity_row, batch, ""),
        "entity_texts": _dense(entity_text, entity_row, batch, ""),
        "entity_starts": _dense(entity_start, entity_row, batch, -1),
        "entity_ends": _dense(entity_end, entity_row, batch, -1),
        "entity_scores": _dense(entity_score, entity_row, batch, 0.0),
        "entity_count": tf.cast(tf.math.bincount(tf.cast(entity_row, tf.int32),
                                                 minlength=tf.cast(batch, tf.int32),
                                                 maxlength=tf.cast(batch, tf.int32)), tf.int32),
        "truncated": truncated,
    }
