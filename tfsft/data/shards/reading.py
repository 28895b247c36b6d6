"""Training batches read back from shard files, as the in-memory pipeline makes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tfsft.data.shards.manifest import READ_FILES, SHUFFLE_ROWS, FeatureSpec, Manifest
from tfsft.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


def shard_dataset(manifest: Manifest, batch_size: int, seed: int | None = None,
                  max_rows: int | None = None, window_batches: int | None = None,
                  buckets: Sequence[int] | None = None,
                  files: Sequence[int] | None = None,
                  steps: int | None = None) -> tf.data.Dataset:
    """Shuffled training batches from the shards, as
    :func:`tfsft.data.pipeline.make_dataset` makes them from rows in memory.

    Every epoch shuffles the shard order, reads the shards interleaved, shuffles rows in a
    buffer of up to ``SHUFFLE_ROWS``, sorts each window of ``window_batches`` batches by
    length, cuts it into batches (all full but the last) and shuffles the batches.
    ``max_rows`` reads only that many rows per epoch; ``files`` (indices into the manifest's
    shards) reads those shards only (one worker's share); ``steps`` makes every epoch exactly
    that many batches (the rows repeat where they run out), so that workers reading shards of
    different sizes take the same steps. Parsing runs in parallel.
    """
    import tensorflow as tf

    from tfsft.data.pipeline import PARALLEL_BATCHES, WINDOW_BATCHES, count_batches, without_autotune

    window_batches = window_batches or WINDOW_BATCHES
    chosen = list(range(len(manifest.shards))) if files is None else list(files)
    rows = sum(manifest.shards[i]["rows"] for i in chosen)
    if max_rows is not None:
        rows = min(rows, max_rows)
    if rows == 0:
        raise DataError(str(manifest.folder), None, "the shards hold no rows",
                        "run tfsft preprocess again")
    records = _shuffled_records([str(manifest.files[i]) for i in chosen], rows, seed)
    if max_rows is not None:
        records = records.take(rows)
    if steps is not None:
        records = records.repeat().take(steps * batch_size)
        rows = steps * batch_size
    parse_spec = _parse_spec(manifest.features)

    def parse_and_sort(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        order = tf.argsort(parsed["token_ids"].row_lengths(), stable=True)
        return {name: tf.gather(value, order) for name, value in parsed.items()}

    window = batch_size * window_batches
    parsed = records.batch(window).map(parse_and_sort, num_parallel_calls=PARALLEL_BATCHES)
    batches = parsed.unbatch().ragged_batch(batch_size)
    batches = batches.shuffle(window_batches, seed=seed, reshuffle_each_iteration=True)
    dataset = batches.map(_batch_maker(manifest.features, buckets),
                          num_parallel_calls=PARALLEL_BATCHES)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(
        count_batches(rows, batch_size)))
    return without_autotune(dataset)


def _shuffled_records(paths: list[str], rows: int, seed: int | None) -> tf.data.Dataset:
    """Serialized rows of the shard files at ``paths``: a seeded shuffle of the file order
    each epoch, the files read interleaved, the rows shuffled in a buffer."""
    import tensorflow as tf

    file_names = tf.data.Dataset.from_tensor_slices(paths)
    file_names = file_names.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = file_names.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), 16), block_length=1,
        num_parallel_calls=min(len(paths), READ_FILES), deterministic=True)
    return records.shuffle(min(rows, SHUFFLE_ROWS), seed=seed, reshuffle_each_iteration=True)


def _batch_maker(specs: dict[str, FeatureSpec], buckets: Sequence[int] | None) -> Any:
    """The function from a parsed ragged batch to ``(features, targets[, weights])``, padded
    to the batch's longest row (or its length bucket), as the in-memory pipeline gives them."""
    import tensorflow as tf

    from tfsft.data.pipeline import _bucket_padder

    pad_tokens = _bucket_padder(buckets)
    padders = {name: _bucket_padder(buckets, tf.constant(spec.pad, dtype=tf.dtypes.as_dtype(
        spec.dtype))) for name, spec in specs.items() if spec.kind in ("token_aligned", "ragged")}

    def to_batch(parsed):
        lengths = parsed["token_ids"].row_lengths()
        ids = pad_tokens(tf.cast(parsed["token_ids"], tf.int32))
        mask = tf.sequence_mask(lengths, tf.shape(ids)[1], dtype=tf.int32)
        features = {"token_ids": ids, "segment_ids": pad_tokens(tf.cast(parsed["segment_ids"],
                                                                        tf.int32)),
                    "padding_mask": mask}
        targets, weights = {}, None
        for name, spec in specs.items():
            if spec.kind == "tokens":
                continue
            value = tf.cast(parsed[name], tf.dtypes.as_dtype(spec.dtype))
            if spec.kind in ("token_aligned", "ragged"):
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

    return to_batch


def _parse_spec(specs: dict[str, FeatureSpec]) -> dict[str, Any]:
    import tensorflow as tf

    parse = {}
    for name, spec in specs.items():
        dtype = tf.float32 if spec.stored_as == "float" else tf.int64
        if spec.kind == "row":
            parse[name] = tf.io.FixedLenFeature(spec.shape, dtype)
        else:
            parse[name] = tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
    return parse


