"""Training batches read back from shard files, as the in-memory pipeline makes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tfsft.data.shards.manifest import BATCH_GROUPS, READ_FILES, SHUFFLE_ROWS, FeatureSpec, Manifest
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
    buffer of up to ``SHUFFLE_ROWS``, orders each window of ``window_batches`` batches by
    length (keeping rows that share a text apart, where rows have ``batch_groups``; see
    :func:`tfsft.data.pipeline.distinct_batches`), cuts it into batches (all full but the last)
    and shuffles the batches.
    ``max_rows`` reads only that many rows per epoch; ``files`` (indices into the manifest's
    shards) reads those shards only (one worker's share); ``steps`` makes every epoch exactly
    that many batches (the rows repeat where they run out), so that workers reading shards of
    different sizes take the same steps. Parsing runs in parallel.
    """
    import tensorflow as tf

    from tfsft.data.pipeline import (
        PARALLEL_BATCHES,
        count_batches,
        default_window_batches,
        window_order,
        windowed_batches,
        without_autotune,
    )

    window_batches = window_batches or default_window_batches(BATCH_GROUPS in manifest.features)
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
        order = window_order(parsed["token_ids"].row_lengths(), parsed.pop(BATCH_GROUPS, None),
                             batch_size)
        return {name: tf.gather(value, order) for name, value in parsed.items()}

    batches = windowed_batches(records, batch_size, window_batches, parse_and_sort,
                               window_batches, seed, parallel=PARALLEL_BATCHES)
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
    """The function from a parsed ragged batch to ``(features, targets[, weights])``: the
    columns cast to their stored types, then :func:`tfsft.data.pipeline.batch_assembler`."""
    import tensorflow as tf

    from tfsft.data.pipeline import batch_assembler

    dtypes = {name: tf.dtypes.as_dtype(spec.dtype) for name, spec in specs.items()}
    dtypes["token_ids"] = dtypes["segment_ids"] = tf.int32
    assemble = batch_assembler({name: tf.constant(spec.pad, dtype=dtypes[name])
                                for name, spec in specs.items()
                                if spec.kind in ("token_aligned", "ragged")}, buckets)
    return lambda parsed: assemble({name: tf.cast(value, dtypes[name])
                                    for name, value in parsed.items()})


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




def explain_read_error(manifest: Manifest, exc: Exception) -> DataError | None:
    """The data error behind a TensorFlow error raised while training reads the shards: a
    damaged shard (named, found by reading each file again) or a row count that differs from
    the manifest's; ``None`` when ``exc`` is neither."""
    import tensorflow as tf

    if isinstance(exc, tf.errors.DataLossError):
        for path in manifest.files:
            try:
                for _ in tf.data.TFRecordDataset(str(path)):
                    pass
            except tf.errors.DataLossError:
                return DataError(str(path), None, "the shard file is damaged (a record fails "
                                 "its checksum)", "copy the folder again, or run tfsft "
                                 "preprocess again")
        return DataError(str(manifest.folder), None, f"a shard could not be read "
                         f"({exc.message.splitlines()[0]})",
                         "copy the folder again, or run tfsft preprocess again")
    if isinstance(exc, tf.errors.InvalidArgumentError) and "expected to contain" in exc.message:
        return DataError(str(manifest.folder), None, f"the shards do not hold the "
                         f"{manifest.rows} rows its manifest lists "
                         f"({exc.message.splitlines()[0]})",
                         "copy the whole folder again, or run tfsft preprocess again")
    return None
