"""tf.data input pipelines: tokenize once, batch rows of similar length, pad to the batch's longest.

>>> import numpy as np
>>> from tfsft.data.examples import TextExamples
>>> from tfsft.tokenization import WordPieceTokenizer
>>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"])
>>> data = TextExamples(["good", "bad bad", "good"], None, np.array([1, 0, 1], np.int32),
...                     ("neg", "pos"))
>>> encoded = encode(tokenizer, data, max_length=16)
>>> dataset = make_dataset(encoded, batch_size=2)
>>> [x["token_ids"].shape.as_list() for x, y in dataset]
[[2, 3], [1, 4]]
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfsft.data.examples import TextExamples
from tfsft.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)
_ENCODE_CHUNK = 8192


@dataclass
class TokenAligned:
    """A per-token target: flat values aligned with ``EncodedData.token_ids``; batches pad it
    with ``pad_value`` (e.g. an ignored class id)."""

    values: np.ndarray
    pad_value: int | float = 0


@dataclass
class RaggedRows:
    """Per-row values with their own row lengths (not aligned with the tokens), e.g. the
    positions a causal language model is trained on; batches pad them with ``pad_value``."""

    values: np.ndarray
    row_lengths: np.ndarray
    pad_value: int | float = 0


@dataclass
class EncodedData:
    """Token ids of a whole data set, tokenized once: flat arrays plus row lengths.

    ``targets`` maps a model output name to one array row per example, or to a
    :class:`TokenAligned` per-token target or a :class:`RaggedRows`; one target is fed to
    ``fit`` as ``y`` itself, more as a dict. ``sample_weights`` (one per example) weight the
    loss. ``extra_features`` (:class:`RaggedRows` by name) join the model's input features.
    ``batch_groups`` (int64 ``[rows, k]``: ids of the texts a row holds) keep rows that share
    a text out of one batch where the window allows (see :func:`distinct_batches`).
    ``balance`` (``("oversample" | "undersample", class id per row)``) makes every shuffled
    epoch class-balanced (see :func:`balanced_rows`).
    """

    token_ids: np.ndarray  # int32, all rows concatenated
    segment_ids: np.ndarray  # int32, same shape as token_ids
    lengths: np.ndarray  # int32, tokens per row
    targets: dict[str, np.ndarray | TokenAligned] | None = None
    sample_weights: np.ndarray | None = None
    extra_features: dict[str, RaggedRows] | None = None
    batch_groups: np.ndarray | None = None
    balance: tuple[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def rows(self, start: int, stop: int) -> list[list[int]]:
        """Token ids of rows ``start:stop`` as lists (for inspection and tests)."""
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        return [self.token_ids[offsets[i]:offsets[i + 1]].tolist() for i in range(start, stop)]


def encode_texts(tokenizer: WordPieceTokenizer, texts: Sequence[str],
                 text_pairs: Sequence[str] | None, max_length: int) -> EncodedData:
    """Tokenize every text (or pair) once, in chunks, with the graph tokenizer; no targets."""
    ids, segments, lengths = [], [], []
    for start in range(0, len(texts), _ENCODE_CHUNK):
        stop = start + _ENCODE_CHUNK
        pairs = None if text_pairs is None else list(text_pairs[start:stop])
        encoded = tokenizer.encode(list(texts[start:stop]), pairs, max_length=max_length)
        mask = encoded["padding_mask"].numpy().astype(bool)
        ids.append(encoded["token_ids"].numpy()[mask])  # row-major: rows stay in order
        segments.append(encoded["segment_ids"].numpy()[mask])
        lengths.append(mask.sum(axis=1).astype(np.int32))
    return EncodedData(
        token_ids=np.concatenate(ids).astype(np.int32),
        segment_ids=np.concatenate(segments).astype(np.int32),
        lengths=np.concatenate(lengths),
    )


def distinct_batches(lengths: np.ndarray, groups: np.ndarray | None,
                     batch_size: int) -> np.ndarray:
    """The order of a window's rows for batches of ``batch_size``: rows of similar length
    together and, where ``groups`` (int ``[rows, k]``, ids of the texts a row holds) are given,
    no two rows of one batch sharing an id while the window has rows left that share none.

    Each batch takes the shortest rows left that share no id with the batch so far (ties keep
    the window's order, which is shuffled); a batch that finds too few such rows is filled with
    the shortest left. For in-batch negatives this keeps a text's other pairs out of its batch
    (a duplicate is no negative) at little padding: on SQuAD (10 questions per passage, batch
    32, windows of 16 batches) padded / real passage tokens are 1.30 with 93 % distinct
    passages per batch, against 1.54 and 94 % for batches made round by round and 1.74 and
    84 % for random batches.

    >>> distinct_batches(np.array([5, 3, 3, 4]), np.array([[1], [1], [2], [3]]), 2).tolist()
    [1, 2, 3, 0]
    >>> distinct_batches(np.array([5, 3, 3, 4]), None, 2).tolist()
    [1, 2, 3, 0]
    """
    order = np.argsort(lengths, kind="stable")
    if groups is None or len(order) <= 1:
        return order.astype(np.int64)
    groups = np.asarray(groups).reshape(len(order), -1)
    left, result = order.tolist(), []
    while left:
        batch, seen, skipped = [], set(), []
        for position, row in enumerate(left):
            if len(batch) == batch_size:
                skipped.extend(left[position:])
                break
            ids = groups[row].tolist()
            if seen.isdisjoint(ids):
                batch.append(row)
                seen.update(ids)
            else:
                skipped.append(row)
        fill = batch_size - len(batch)
        batch.extend(skipped[:fill])  # too few rows without a shared text: the shortest left
        result.extend(batch)
        left = skipped[fill:]
    return np.asarray(result, np.int64)


def encode(tokenizer: WordPieceTokenizer, data: TextExamples, max_length: int) -> EncodedData:
    """Tokenize ``data`` once; its ``targets`` (if labelled) become the single target."""
    encoded = encode_texts(tokenizer, data.texts, data.text_pairs, max_length)
    if data.targets is not None:
        encoded.targets = {"target": data.targets}
    return encoded


# Rows are sorted by length inside windows of this many batches before batching: batches then
# hold rows of similar length, while which rows share a batch still changes every epoch. On
# 2,048 SST-2 sentences, padded tokens / real tokens: 2.98 for random batches, 1.30 / 1.15 /
# 1.07 for windows of 8 / 16 / 50 batches.
WINDOW_BATCHES = 50
# Rows that must not share a text in a batch (see distinct_batches) are ordered in windows of
# this many batches instead: in a whole-data window the same texts meet batch after batch and
# epoch after epoch. On SQuAD (1,025 pairs, about ten questions per passage, batch 32), over
# three epochs a passage meets 52 others in windows of 50 batches, 65 in windows of 16 (padding
# 1.29 -> 1.30 padded tokens per real one), 70 with the earlier round-by-round batches; recall@1
# of the tuned retriever, three seeds: 0.6465 +- 0.0063 (50), 0.6514 +- 0.0029 (16), 0.6539 +-
# 0.0056 (rounds, 1.54 padded tokens per real one).
DISTINCT_WINDOW_BATCHES = 16
# Batches prepared in parallel and ahead of the model step, fixed rather than tf.data AUTOTUNE:
# with the autotuner on, deleting a finished iterator (each epoch's, each validation pass's)
# waits for its thread, 0-5 s at random on a 2-core CPU; a padded batch takes about a
# millisecond to gather next to a step of 50 ms and more, so two workers and two batches ahead
# keep the step fed.
PARALLEL_BATCHES = 2
PREFETCH_BATCHES = 2


def without_autotune(dataset: tf.data.Dataset,
                     prefetch: int = PREFETCH_BATCHES) -> tf.data.Dataset:
    """``dataset`` prefetching ``prefetch`` batches, with tf.data's autotuner off (see
    :data:`PARALLEL_BATCHES`): its parallel stages keep the number of calls they were given."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(prefetch).with_options(options)


def default_window_batches(distinct: bool) -> int:
    """Batches per sorting window: :data:`DISTINCT_WINDOW_BATCHES` where rows must not share a
    text in a batch (``batch_groups``), else :data:`WINDOW_BATCHES`."""
    return DISTINCT_WINDOW_BATCHES if distinct else WINDOW_BATCHES


def count_batches(rows: int, batch_size: int) -> int:
    """How many batches :func:`make_dataset` yields: every batch is full except the last."""
    return -(-rows // batch_size)


def length_buckets(max_length: int, smallest: int = 16) -> tuple[int, ...]:
    """Batch widths for XLA: powers of two from ``smallest`` up to ``max_length``, and
    ``max_length`` itself, so that a compiled step sees a bounded number of shapes.

    >>> length_buckets(128), length_buckets(384), length_buckets(8)
    ((16, 32, 64, 128), (16, 32, 64, 128, 256, 384), (8,))
    """
    widths, width = [], smallest
    while width < max_length:
        widths.append(width)
        width *= 2
    return (*widths, max_length)


def make_dataset(
    encoded: EncodedData,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    window_batches: int | None = None,
    buckets: Sequence[int] | None = None,
) -> tf.data.Dataset:
    """A dataset of ``(features, targets)`` batches, grouped by length and padded per batch.

    Features are ``token_ids``, ``segment_ids`` and ``padding_mask`` (int32 ``[batch, length]``),
    where ``length`` is the longest row of that batch; ``targets`` as described in
    :class:`EncodedData` (batches are ``(features, targets, weights)`` with sample weights).
    Every batch holds ``batch_size`` rows except the last one. Without ``shuffle`` the rows
    come sorted by length (least padding).
    With ``shuffle``, each epoch shuffles the rows and makes :func:`windowed_batches` of them;
    the order changes every epoch and is the same for the same ``seed``. Batches do not keep
    the input order, so use :func:`predict_logits` for predictions.
    With ``buckets`` (ascending widths, see :func:`length_buckets`), each batch is padded to
    the smallest bucket that holds its longest row instead (for ``jit_compile``: one compiled
    program per bucket, not per length); per-row targets of their own length likewise.
    The shard pipeline (:func:`tfsft.data.shards.shard_dataset`) makes the same batches from
    rows read from files, through the same :func:`windowed_batches` and
    :func:`batch_assembler`.
    """
    rows = len(encoded)
    if window_batches is None:
        window_batches = default_window_batches(encoded.batch_groups is not None)
    if shuffle:
        lengths = tf.constant(encoded.lengths)
        groups = None if encoded.batch_groups is None else tf.constant(encoded.batch_groups)
        if encoded.balance is not None:
            indices, rows = balanced_rows(*encoded.balance, seed)
        else:
            indices = tf.data.Dataset.range(rows).shuffle(rows, seed=seed,
                                                          reshuffle_each_iteration=True)
        batches = windowed_batches(
            indices, batch_size, window_batches,
            lambda chunk: tf.gather(chunk, window_order(
                tf.gather(lengths, chunk),
                None if groups is None else tf.gather(groups, chunk), batch_size)),
            count_batches(rows, batch_size), seed)
    else:
        batches = tf.data.Dataset.from_tensor_slices(_length_order(encoded)).batch(batch_size)
    dataset = batches.map(_batch_gatherer(encoded, buckets), num_parallel_calls=PARALLEL_BATCHES)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(
        count_batches(rows, batch_size)))
    return without_autotune(dataset)


def balanced_rows(how: str, classes: np.ndarray,
                  seed: int | None) -> tuple[tf.data.Dataset, int]:
    """Row indices of one class-balanced epoch, drawn anew every epoch, and how many there are:
    ``oversample`` takes every class as often as the largest (each row of a smaller class
    about equally often, the extra draws random), ``undersample`` as often as the smallest
    (a random subset of each larger class). Classes without rows are left out.

    >>> indices, rows = balanced_rows("oversample", np.array([0, 0, 0, 0, 1]), seed=1)
    >>> rows, sorted(np.bincount(list(indices.as_numpy_iterator())).tolist())
    (8, [1, 1, 1, 1, 4])
    """
    members = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    size = max(map(len, members)) if how == "oversample" else min(map(len, members))
    parts = None
    for number, rows in enumerate(members):
        part = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64)).shuffle(
            len(rows), seed=None if seed is None else seed + number,
            reshuffle_each_iteration=True).repeat().take(size)
        parts = part if parts is None else parts.concatenate(part)
    total = size * len(members)
    logger.info("class-balanced epochs (%s): %d rows of each of %d labels, %d rows an epoch "
                "(the labels had %s rows)", how, size, len(members), total,
                ", ".join(str(len(m)) for m in members))
    return parts.shuffle(total, seed=seed, reshuffle_each_iteration=True), total


def windowed_batches(rows: tf.data.Dataset, batch_size: int, window_batches: int,
                     sort_window: Any, shuffle_batches: int, seed: int | None,
                     parallel: int | None = None) -> tf.data.Dataset:
    """Batches of shuffled ``rows``: each window of ``window_batches`` batches sorted by length
    (``sort_window(window) -> window``), cut into batches of ``batch_size`` rows (all full but
    the last), the batches shuffled in a buffer of ``shuffle_batches`` (re-shuffled every epoch,
    the same for the same ``seed``). Rows of a batch are alike in length, so padding is small,
    while every epoch sees other batches."""
    window = rows.batch(batch_size * window_batches).map(sort_window, num_parallel_calls=parallel)
    return window.unbatch().ragged_batch(batch_size).shuffle(
        shuffle_batches, seed=seed, reshuffle_each_iteration=True)


def window_order(lengths: tf.Tensor, groups: tf.Tensor | None, batch_size: int) -> tf.Tensor:
    """:func:`distinct_batches` in a tf.data window (a plain stable sort by length where rows
    have no ``groups``)."""
    if groups is None:
        return tf.argsort(lengths, stable=True)
    order = tf.numpy_function(lambda n, g: distinct_batches(n, g, batch_size),
                              [lengths, groups], tf.int64, stateful=False)
    return tf.ensure_shape(order, lengths.shape)


def batch_assembler(pads: dict[str, tf.Tensor], buckets: Sequence[int] | None = None):
    """``f(columns) -> (features, targets[, sample weights])`` for one batch of rows given as
    columns by name: ``token_ids`` and ``segment_ids`` (ragged int32), ``target/NAME`` and
    ``extra/NAME`` (one value per row, or ragged rows padded with ``pads[name]``) and
    ``sample_weight``. Ragged columns are padded to the batch's longest row (or its bucket).
    Both pipelines end here: :func:`make_dataset` gathers the columns from memory, the shard
    pipeline parses them from files."""
    pad_tokens = _bucket_padder(buckets)
    padders = {name: _bucket_padder(buckets, value) for name, value in pads.items()}

    def assemble(columns: dict[str, Any]):
        lengths = columns["token_ids"].row_lengths()
        ids = pad_tokens(columns["token_ids"])
        mask = tf.sequence_mask(lengths, tf.shape(ids)[1], dtype=tf.int32)
        features = {"token_ids": ids, "segment_ids": pad_tokens(columns["segment_ids"]),
                    "padding_mask": mask}
        targets, weights = {}, None
        for name, value in columns.items():
            if name in ("token_ids", "segment_ids"):
                continue
            if isinstance(value, tf.RaggedTensor):
                value = padders[name](value)
            if name == "sample_weight":
                weights = value
            elif name.startswith("extra/"):
                features[name.removeprefix("extra/")] = value
            else:
                targets[name.removeprefix("target/")] = value
        if not targets:
            targets = {"target": tf.zeros_like(lengths, tf.int32)}
        y = next(iter(targets.values())) if len(targets) == 1 else targets
        return (features, y) if weights is None else (features, y, weights)

    return assemble


def _batch_gatherer(encoded: EncodedData, buckets: Sequence[int] | None = None):
    """``f(row indices) -> (features, targets[, sample weights])`` from the rows in memory."""
    columns: dict[str, Any] = {
        "token_ids": tf.RaggedTensor.from_row_lengths(encoded.token_ids, encoded.lengths),
        "segment_ids": tf.RaggedTensor.from_row_lengths(encoded.segment_ids, encoded.lengths)}
    pads = {}
    named = [*[(f"target/{n}", v) for n, v in (encoded.targets or {}).items()],
             *[(f"extra/{n}", v) for n, v in (encoded.extra_features or {}).items()]]
    for name, value in named:
        if isinstance(value, RaggedRows | TokenAligned):
            row_lengths = (value.row_lengths if isinstance(value, RaggedRows)
                           else encoded.lengths)
            columns[name] = tf.RaggedTensor.from_row_lengths(value.values, row_lengths)
            pads[name] = tf.constant(value.pad_value, dtype=columns[name].dtype)
        else:
            columns[name] = tf.constant(value)
    if encoded.sample_weights is not None:
        columns["sample_weight"] = tf.constant(encoded.sample_weights.astype(np.float32))
    assemble = batch_assembler(pads, buckets)
    return lambda indices: assemble({name: tf.gather(column, indices)
                                     for name, column in columns.items()})


def _bucket_padder(buckets: Sequence[int] | None, default_value=None):
    """``f(ragged rows) -> dense [rows, width]``: width the longest row, or its bucket."""
    if not buckets:
        return lambda rows: rows.to_tensor(default_value=default_value)
    widths = tf.constant(sorted(buckets), tf.int64)

    def pad(rows):
        longest = tf.cast(tf.reduce_max(rows.row_lengths()), tf.int64)
        index = tf.minimum(tf.searchsorted(widths, [longest])[0], len(buckets) - 1)
        width = tf.maximum(widths[index], longest)  # rows past the last bucket keep their width
        inner = tf.shape(rows.flat_values, out_type=tf.int64)[1:]  # per-token vectors keep theirs
        shape = tf.concat([tf.stack([tf.cast(rows.nrows(), tf.int64), width]), inner], 0)
        return rows.to_tensor(default_value=default_value, shape=shape)

    return pad


def _length_order(encoded: EncodedData) -> np.ndarray:
    """Row indices sorted by length (stable): the row order of an unshuffled dataset."""
    return np.argsort(encoded.lengths, kind="stable").astype(np.int64)


def restore_order(encoded: EncodedData) -> np.ndarray:
    """Indices that put rows of an unshuffled :func:`make_dataset` back in input order."""
    return np.argsort(_length_order(encoded), kind="stable")


def make_ordered_batches(encoded: EncodedData, batch_size: int) -> tuple[tf.data.Dataset, np.ndarray]:
    """Feature batches of rows sorted by length (little padding) and the order to undo the sort."""
    dataset = make_dataset(encoded, batch_size).map(lambda features, *_: features)
    return dataset, restore_order(encoded)


def predict_logits(model: keras.Model, encoded: EncodedData, batch_size: int = 64,
                   verbose: int | str = "auto") -> np.ndarray | list[np.ndarray]:
    """The model's outputs for every row of ``encoded``, in input order.

    Sentence-level outputs come as one array ``[rows, ...]``; per-token outputs
    (``[batch, length, ...]``) as a list with one ``[tokens of the row, ...]`` array per row.
    Batches hold rows of similar length (little padding); the model's forward pass is traced
    once per model for any batch shape (see :func:`forward_function`). ``verbose`` (not 0)
    shows a progress bar.
    """
    dataset, restore = make_ordered_batches(encoded, batch_size)
    return outputs_in_input_order(predict_batches(model, dataset, verbose), encoded, restore)


def forward_function(model: keras.Model, features_spec: dict[str, tf.TensorSpec]):
    """``model(features, training=False)`` as a ``tf.function`` traced once for batches of any
    size and length (``features_spec`` has ``None`` dimensions), cached for the model.

    ``keras.Model.predict`` traces twice on batches of different lengths: once for the first
    shape, once more for the general one (about as long as a training step's trace).
    """
    key = tuple(sorted((name, spec.dtype.name) for name, spec in features_spec.items()))
    cached = _FORWARD.setdefault(model, {})
    if key not in cached:
        general = any_shape(features_spec)
        held = weakref.ref(model)  # the cache must not keep the model alive

        def forward(features):
            return held()(features, training=False)

        cached[key] = tf.function(forward, input_signature=[general])
    return cached[key]


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def any_shape(specs: Any) -> Any:
    """``specs`` (a nest of ``tf.TensorSpec``) with every dimension unknown: the signature of a
    ``tf.function`` traced once for batches of any size and length."""
    return tf.nest.map_structure(
        lambda spec: tf.TensorSpec([None] * spec.shape.rank, spec.dtype, spec.name), specs)


def predict_batches(model: keras.Model, dataset: tf.data.Dataset,
                    verbose: int | str = 0) -> list[np.ndarray]:
    """The model's output (a NumPy array) for each feature batch of ``dataset``, in order."""
    forward = forward_function(model, dataset.element_spec)
    steps = int(dataset.cardinality())
    progress = (keras.utils.Progbar(steps if steps >= 0 else None)
                if verbose not in (0, "0", False) else None)
    outputs = []
    for features in dataset:
        outputs.append(np.asarray(forward(features)))
        if progress is not None:
            progress.add(1)
    return outputs


def outputs_in_input_order(batches: Sequence[np.ndarray], encoded: EncodedData,
                           restore: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Per-batch outputs of length-ordered batches (:func:`make_ordered_batches`) as one array
    in input order, or per-token outputs as one array per row without its padding."""
    if not batches:
        return np.zeros((0,), np.float32)
    if batches[0].ndim < 3:
        return np.concatenate(batches)[restore]
    lengths = encoded.lengths[_length_order(encoded)]
    padded = [row for batch in batches for row in batch]
    rows = [row[:length] for row, length in zip(padded, lengths, strict=True)]
    return [rows[i] for i in restore]
