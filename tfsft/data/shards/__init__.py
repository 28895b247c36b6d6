"""Pre-tokenized training data: sharded TFRecord files of token ids and targets, and a manifest.

:func:`write_shards` (``tfsft preprocess``) reads a training file in chunks (never whole),
learns the task state from all chunks first (labels, target statistics), then tokenizes the
chunks on several threads and deals each chunk's rows out over ``shards`` TFRecord files, one
``tf.train.Example`` per row, then shuffles each shard (rows go to random shards, so the shards
are a random permutation of the file however it was sorted). :func:`shard_dataset` reads them
back as training batches, the batches :func:`tfsft.data.pipeline.make_dataset` makes from rows
in memory.

A shard folder holds ``manifest.json`` (task, options and learned state, tokenizer hash, max
length, counts, skipped rows, the feature layout), the ``train-*.tfrecord`` files, the tokenizer
and ``calibration.jsonl`` (a seeded sample of the rows, for int8 export calibration).

>>> from tfsft.data.shards import write_shards, read_manifest
>>> manifest = write_shards(create_task("text-classification",
...                         {"text_column": "sentence"}), "train.tsv", "sst2-shards", model="minilm-l6",
...                         max_length=64, shards=8)                    # doctest: +SKIP
>>> read_manifest("sst2-shards").rows                                   # doctest: +SKIP
67349
"""

from tfsft.data.shards.manifest import (
    CALIBRATION_FILE,
    MANIFEST_FILE,
    Manifest,
    check_compatible,
    is_shard_folder,
    read_manifest,
    shard_report,
)
from tfsft.data.shards.reading import explain_read_error, shard_dataset
from tfsft.data.shards.writing import write_shards

__all__ = ["CALIBRATION_FILE", "MANIFEST_FILE", "Manifest", "check_compatible",
           "explain_read_error", "is_shard_folder", "read_manifest", "shard_dataset",
           "shard_report", "write_shards"]
