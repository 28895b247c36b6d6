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
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf

from tfsft.tasks.token_classification import tags as tag_schemes

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.tokenization import WordPieceTokenizer

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
    """``values`` of rows ``rows`` as ``[nrows, longest row]``, padded with ``default``."""
    return tf.RaggedTensor.from_value_rowids(values, rows, nrows=nrows).to_tensor(
        default_value=tf.cast(default, values.dtype))


class _PieceTags(NamedTuple):
    """The model's choice for every word piece of the batch (flat, in row order)."""

    tag: tf.Tensor  # int32 label id of the most probable tag
    probability: tf.Tensor  # float32 softmax probability of that tag
    row: tf.Tensor  # int64 text the piece belongs to
    unit_start: tf.Tensor  # bool: the piece starts a unit (a word)


class _Units(NamedTuple):
    """One value per unit (the pieces of a word), flat over the batch, in row order."""

    row: tf.Tensor  # int64 text of the unit
    tag: tf.Tensor  # int32 label id (its first piece's)
    probability: tf.Tensor  # float32 probability of that label
    start: tf.Tensor  # int32 character offset of the unit's start
    end: tf.Tensor  # int32 character offset of its end (exclusive)
    prefix: tf.Tensor  # int32 prefix code of the tag (see :func:`label_tables`)
    kind: tf.Tensor  # int32 entity type id of the tag (-1: outside)


class _Entities(NamedTuple):
    """One value per decoded entity, flat over the batch, in row order."""

    row: tf.Tensor  # int64 text of the entity
    type_name: tf.Tensor  # string entity type
    text: tf.Tensor  # string covered text
    start: tf.Tensor  # int32 character offset of the start
    end: tf.Tensor  # int32 character offset of the end (exclusive)
    score: tf.Tensor  # float32 mean probability of its units' tags


def _window_pieces(tokenizer: WordPieceTokenizer, texts: tf.Tensor, max_length: int
                   ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor, tf.Tensor]:
    """Word-piece ids and UTF-8 byte spans of each text, cut to the ``max_length - 2`` pieces
    the model sees, and whether each text had more (``truncated``)."""
    ids, byte_starts, byte_ends = tokenizer.wordpieces_with_offsets(texts)
    width = max_length - 2
    truncated = ids.row_lengths() > width
    return ids[:, :width], byte_starts[:, :width], byte_ends[:, :width], truncated


def _char_spans(texts: tf.Tensor, byte_starts: tf.RaggedTensor, byte_ends: tf.RaggedTensor,
                counts: tf.Tensor, batch: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Character offsets of the pieces' byte spans: how many characters start before each
    byte offset (ragged ``[batch, (pieces)]``, int32)."""
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
    char_bytes = tf.cast(char_bytes, tf.int32).to_tensor(default_value=_BIG)
    char_bytes = tf.concat([char_bytes, tf.fill([batch, 1], _BIG)], axis=1)
    starts = tf.searchsorted(char_bytes, byte_starts.to_tensor(default_value=0), side="left")
    ends = tf.searchsorted(char_bytes, byte_ends.to_tensor(default_value=0), side="left")
    starts = tf.RaggedTensor.from_tensor(tf.cast(starts, tf.int32), lengths=counts)
    ends = tf.RaggedTensor.from_tensor(tf.cast(ends, tf.int32), lengths=counts)
    return starts, ends


def _piece_tags(raw: tf.Tensor, ids: tf.RaggedTensor, counts: tf.Tensor,
                continuation_ids: np.ndarray) -> _PieceTags:
    """The most probable tag of every piece (``raw`` without ``[CLS]`` and ``[SEP]``) and the
    pieces that start a unit: not a continuation piece (``##...``), or first in its text."""
    piece_logits = tf.RaggedTensor.from_tensor(raw[:, 1:-1, :], lengths=counts)
    probabilities = tf.nn.softmax(piece_logits.values, axis=-1)
    tag_id = tf.cast(tf.argmax(probabilities, axis=-1), tf.int32)
    tag_probability = tf.reduce_max(probabilities, axis=-1)
    piece_row = ids.value_rowids()
    first_in_row = piece_row != _shift(piece_row, -1)
    continuation = tf.gather(tf.constant(continuation_ids), ids.values)
    unit_start = tf.logical_or(tf.logical_not(continuation), first_in_row)
    return _PieceTags(tag_id, tag_probability, piece_row, unit_start)


def _units(pieces: _PieceTags, piece_starts: tf.Tensor, piece_ends: tf.Tensor,
           prefix_table: np.ndarray, type_table: np.ndarray) -> _Units:
    """Tag, probability and character span of every unit: its first piece's tag, the start of
    its first piece and the furthest end of its pieces (flat ``piece_starts`` / ``piece_ends``)."""
    positions = tf.where(pieces.unit_start)[:, 0]
    unit_of_piece = tf.cumsum(tf.cast(pieces.unit_start, tf.int32)) - 1
    unit_count = tf.shape(positions)[0]
    unit_tag = tf.gather(pieces.tag, positions)
    return _Units(
        row=tf.gather(pieces.row, positions),
        tag=unit_tag,
        probability=tf.gather(pieces.probability, positions),
        start=tf.gather(piece_starts, positions),
        end=tf.math.unsorted_segment_max(piece_ends, unit_of_piece, unit_count),
        prefix=tf.gather(tf.constant(prefix_table), unit_tag),
        kind=tf.gather(tf.constant(type_table), unit_tag))


def _entity_begins(units: _Units) -> tuple[tf.Tensor, tf.Tensor]:
    """Lenient decoding: ``begins`` (the unit starts an entity) and ``inside`` (the unit belongs
    to one). A unit of an entity type begins one unless the previous unit of its text is of the
    same type and left its entity open, and the unit's own tag is not a begin or single tag."""
    row_start = units.row != _shift(units.row, -1)
    previous_kind, previous_prefix = _shift(units.kind, -1), _shift(units.prefix, 0)
    open_before = (~row_start & (previous_kind >= 0) & (previous_prefix != 3)
                   & (previous_prefix != 4))
    inside = units.kind >= 0
    begins = inside & (~open_before | (units.kind != previous_kind) | (units.prefix == 1)
                       | (units.prefix == 4))
    return begins, inside


def _entities(units: _Units, texts: tf.Tensor, types: list[str]) -> _Entities:
    """The entities of the units: type, text, character span and mean tag probability."""
    begins, inside = _entity_begins(units)
    entity_of_unit = tf.cumsum(tf.cast(begins, tf.int32)) - 1
    entity_count = tf.reduce_sum(tf.cast(begins, tf.int32))
    members = tf.boolean_mask(entity_of_unit, inside)
    entity_row = tf.boolean_mask(units.row, begins)
    entity_kind = tf.boolean_mask(units.kind, begins)
    entity_start = tf.boolean_mask(units.start, begins)
    entity_end = tf.math.unsorted_segment_max(tf.boolean_mask(units.end, inside), members,
                                              entity_count)
    entity_score = tf.math.unsorted_segment_mean(tf.boolean_mask(units.probability, inside),
                                                 members, entity_count)
    type_names = tf.constant(types if types else [""])
    entity_type = tf.gather(type_names, tf.maximum(entity_kind, 0))
    entity_text = tf.strings.substr(tf.gather(texts, entity_row), entity_start,
                                    entity_end - entity_start, unit="UTF8_CHAR")
    return _Entities(entity_row, entity_type, entity_text, entity_start, entity_end,
                     entity_score)


def _piece_outputs(pieces: _PieceTags, labels: Sequence[str], counts: tf.Tensor,
                   starts: tf.RaggedTensor, ends: tf.RaggedTensor) -> dict[str, tf.Tensor]:
    """``tags`` (the label of each unit's first piece, "" elsewhere), ``token_starts`` and
    ``token_ends``, padded to ``[batch, pieces]``."""
    label_names = tf.constant(list(labels))
    piece_tags = tf.where(pieces.unit_start, tf.gather(label_names, pieces.tag), "")
    per_piece = tf.RaggedTensor.from_row_lengths(piece_tags, counts)
    return {
        "tags": per_piece.to_tensor(default_value=""),
        "token_starts": starts.to_tensor(default_value=-1),
        "token_ends": ends.to_tensor(default_value=-1),
    }


def _padded_entities(entities: _Entities, batch: tf.Tensor) -> dict[str, tf.Tensor]:
    """The ``entity_*`` outputs, padded to ``[batch, entities]``, and ``entity_count``."""
    row = entities.row
    return {
        "entity_types": _dense(entities.type_name, row, batch, ""),
        "entity_texts": _dense(entities.text, row, batch, ""),
        "entity_starts": _dense(entities.start, row, batch, -1),
        "entity_ends": _dense(entities.end, row, batch, -1),
        "entity_scores": _dense(entities.score, row, batch, 0.0),
        "entity_count": tf.cast(tf.math.bincount(tf.cast(row, tf.int32),
                                                 minlength=tf.cast(batch, tf.int32),
                                                 maxlength=tf.cast(batch, tf.int32)), tf.int32),
    }


def entity_outputs(raw: tf.Tensor, texts: tf.Tensor, tokenizer: WordPieceTokenizer,
                   max_length: int, labels: Sequence[str], scheme: str) -> dict[str, tf.Tensor]:
    """See the module docstring; ``raw`` is ``[batch, [CLS] + pieces + [SEP], tags]``."""
    del scheme  # every scheme decodes by the prefix codes
    prefix_table, type_table, types = label_tables(labels)
    batch = tf.shape(texts, out_type=tf.int64)[0]
    ids, byte_starts, byte_ends, truncated = _window_pieces(tokenizer, texts, max_length)
    counts = ids.row_lengths()
    starts, ends = _char_spans(texts, byte_starts, byte_ends, counts, batch)
    pieces = _piece_tags(raw, ids, counts, tokenizer.continuation_ids)
    units = _units(pieces, starts.values, ends.values, prefix_table, type_table)
    entities = _entities(units, texts, types)
    return {**_piece_outputs(pieces, labels, counts, starts, ends),
            **_padded_entities(entities, batch), "truncated": truncated}
