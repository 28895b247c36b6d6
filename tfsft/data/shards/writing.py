"""``tfsft preprocess``: a training file, read in chunks, tokenized once into sharded TFRecords.

:func:`write_shards` reads a training file in chunks (never whole), learns the task state from
all chunks first (labels, target statistics), then tokenizes the chunks on several threads and
deals each chunk's rows out over ``shards`` TFRecord files, one ``tf.train.Example`` per row,
then shuffles each shard (rows go to random shards, so the shards are a random permutation of
the file however it was sorted).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.shards.manifest import (
    BATCH_GROUPS,
    CALIBRATION_FILE,
    CALIBRATION_ROWS,
    CHUNK_ROWS,
    MANIFEST_FILE,
    MARKER,
    TOKENIZER_DIR,
    FeatureSpec,
    Manifest,
    folder_sha256,
)
from tfsft.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.base import Task

logger = logging.getLogger(__name__)


def feature_specs(encoded: EncodedData) -> dict[str, FeatureSpec]:
    """The stored features of an :class:`~tfsft.data.pipeline.EncodedData` (see
    :class:`FeatureSpec`): ``token_ids``, ``segment_ids``, ``target/NAME``,
    ``sample_weight``, ``extra/NAME`` and ``batch_groups``."""
    from tfsft.data.pipeline import RaggedRows, TokenAligned

    specs = {"token_ids": FeatureSpec("tokens", "int32"),
             "segment_ids": FeatureSpec("tokens", "int32")}
    for name, value in _stored_values(encoded).items():
        if isinstance(value, TokenAligned):
            specs[name] = FeatureSpec("token_aligned", str(value.values.dtype),
                                      pad=_plain(value.pad_value))
        elif isinstance(value, RaggedRows):
            specs[name] = FeatureSpec("ragged", str(value.values.dtype),
                                      pad=_plain(value.pad_value))
        else:
            array = np.asarray(value)
            specs[name] = FeatureSpec("row", str(array.dtype), list(array.shape[1:]))
    return specs


def _stored_values(encoded: EncodedData) -> dict[str, Any]:
    """What is stored beside the token and segment ids, by feature name."""
    values: dict[str, Any] = {f"target/{k}": v for k, v in (encoded.targets or {}).items()}
    if encoded.sample_weights is not None:
        values["sample_weight"] = np.asarray(encoded.sample_weights, np.float32)
    values.update({f"extra/{k}": v for k, v in (encoded.extra_features or {}).items()})
    if encoded.batch_groups is not None:  # text ids, equal in every chunk (see distinct_batches)
        values[BATCH_GROUPS] = np.asarray(encoded.batch_groups, np.int64)
    return values


def _plain(value: Any) -> float | int:
    return value.item() if hasattr(value, "item") else value


def _row_values(encoded: EncodedData) -> dict[str, list[np.ndarray] | np.ndarray]:
    """Each stored feature as one array per row (or an array with one row per example)."""
    from tfsft.data.pipeline import RaggedRows, TokenAligned

    def split(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []

    rows: dict[str, Any] = {"token_ids": split(encoded.token_ids, encoded.lengths),
                            "segment_ids": split(encoded.segment_ids, encoded.lengths)}
    for name, value in _stored_values(encoded).items():
        if isinstance(value, TokenAligned):
            rows[name] = split(value.values, encoded.lengths)
        elif isinstance(value, RaggedRows):
            rows[name] = split(value.values, value.row_lengths)
        else:
            rows[name] = np.asarray(value).reshape(len(encoded), -1)
    return rows


def serialize_rows(encoded: EncodedData, specs: dict[str, FeatureSpec]) -> list[bytes]:
    """One serialized ``tf.train.Example`` per row of ``encoded``."""
    from tensorflow.core.example import example_pb2

    rows = _row_values(encoded)
    if set(rows) != set(specs):
        raise ValueError(f"rows hold {sorted(rows)}, the shards {sorted(specs)}")
    columns = [(name, specs[name].stored_as, rows[name]) for name in specs]
    records = []
    for index in range(len(encoded)):
        example = example_pb2.Example()
        feature = example.features.feature
        for name, stored_as, values in columns:
            row = values[index].tolist()
            if stored_as == "float":
                feature[name].float_list.value.extend(row)
            else:
                feature[name].int64_list.value.extend(row)
        records.append(example.SerializeToString())
    return records


@dataclass
class _ChunkResult:
    """What encoding one chunk produced (records dealt out by the main thread)."""

    records: list[bytes]  # one per training row (a long NER sentence or QA context: several)
    examples: int  # the input rows they encode
    lengths: np.ndarray
    specs: dict[str, FeatureSpec]
    target_summary: dict[str, Any] | None
    skipped: dict[str, int]
    calibration: list[dict[str, Any]]
    notes: dict[str, Any]


def write_shards(task: Task, source: Any,
                 output_dir: str | os.PathLike, model: str | os.PathLike = "minilm-l6",
                 max_length: int | None = None, shards: int = 8, chunk_rows: int = CHUNK_ROWS,
                 workers: int | None = None, seed: int = 42, overwrite: bool = False,
                 file_format: str | None = None, encoding: str = "utf-8",
                 delimiter: str | None = None, quoting: bool = True,
                 progress: bool = True) -> Manifest:
    """Tokenize ``source`` for ``task`` (a fresh :class:`~tfsft.tasks.base.Task`, which learns
    its state here) once into ``shards`` TFRecord files under ``output_dir``.

    Memory stays bounded by about ``workers * 2`` chunks of ``chunk_rows`` rows while reading,
    and by one shard's bytes while shuffling the shards (more shards, less memory). ``model``
    names the checkpoint whose tokenizer is used (and which ``tfsft train --train DIR`` must
    use too). ``overwrite`` replaces an earlier shard folder (never a folder this function did
    not write). Returns the manifest.
    """
    from tfsft.data.readers import iter_table_chunks
    from tfsft.io_utils import atomic_directory, atomic_write_json
    from tfsft.models.checkpoints import resolve_checkpoint

    output = Path(output_dir)
    max_length = _checked_arguments(task, source, output, shards, chunk_rows, max_length,
                                    overwrite, file_format, workers)
    checkpoint = resolve_checkpoint(model)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    reader = dict(chunk_rows=chunk_rows, file_format=file_format, encoding=encoding,
                  delimiter=delimiter, quoting=quoting)
    name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__

    started = time.perf_counter()
    rows_read = _learn_state(task, iter_table_chunks(source, **reader), name, progress)
    shards = _shards_for(rows_read, shards, name)
    tokenizer = task.data.load_tokenizer(checkpoint, max_length)
    task.bind(tokenizer, max_length)
    seconds = {"learn": round(time.perf_counter() - started, 3)}

    with atomic_directory(output, overwrite=output.exists()) as tmp:
        (tmp / MARKER).write_text("written by tfsft preprocess; --overwrite may replace this "
                                  "folder\n")
        tokenizer.save(tmp / TOKENIZER_DIR)
        stats = _encode_chunks(task, iter_table_chunks(source, **reader), tmp, shards,
                               workers, seed, rows_read, progress)
        if stats["rows"] == 0:
            raise DataError(name, None, "no rows are left to train on", "check the data")
        _write_jsonl(tmp / CALIBRATION_FILE, stats.pop("calibration"))
        seconds["total"] = round(time.perf_counter() - started, 3)
        manifest = Manifest(
            folder=output, task=task.name, task_options=task.options.to_dict(),
            task_state=task.state_dict(), max_length=max_length,
            tokenizer_sha256=folder_sha256(tmp / TOKENIZER_DIR), rows=stats["rows"],
            tokens=stats["tokens"], shards=stats["shards"], features=stats["specs"],
            skipped=stats["skipped"],
            source=str(Path(source).resolve()) if isinstance(source, str | os.PathLike) else name,
            model=str(Path(model).resolve()) if Path(model).exists() else str(model),
            extra={"rows_read": rows_read, "examples": stats["examples"],
                   "rows_at_max_length": stats["rows_at_max_length"],
                   "length_counts": stats["length_counts"],
                   "target_summary": stats["target_summary"],
                   "encoding": stats["notes"], "chunk_rows": chunk_rows, "seed": seed,
                   "workers": workers, "seconds": seconds})
        atomic_write_json(tmp / MANIFEST_FILE, manifest.to_json())
    return manifest


def _shards_for(rows: int, shards: int, name: str) -> int:
    """``shards``, or fewer when there are fewer rows (more files than rows would be empty)."""
    if shards > rows:
        logger.warning("%s: %d rows cannot fill %d shards; writing at most %d (one a row; fewer "
                       "when rows are skipped)", name, rows, shards, rows)
    return min(shards, rows)


def _learn_state(task: Task, chunks: Iterator[Any], name: str, progress: bool) -> int:
    """The task state from every chunk of the training data (the first pass); the rows read."""
    summaries, rows_read = [], 0
    with _progress(progress, "reading labels and targets", "rows") as bar:
        for chunk in chunks:
            summaries.append(task.data.learn_chunk(chunk))
            rows_read += len(chunk)
            bar.update(len(chunk))
    if not summaries:
        raise DataError(name, None, "there are no data rows", "add rows")
    task.data.merge_chunks(summaries, name)
    return rows_read


def _checked_arguments(task: Task, source: Any, output: Path, shards: int, chunk_rows: int,
                       max_length: int | None, overwrite: bool, file_format: str | None,
                       workers: int | None = None) -> int:
    """Refuse what :func:`write_shards` cannot do before reading anything; the max length."""
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    _refuse_output(output, source, overwrite)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        task.data.refuse_chunked_file(Path(source), file_format)
    max_length = task.data.default_max_length if max_length is None else max_length
    if not 8 <= max_length <= task.data.max_length_limit:
        raise ConfigError(f"--max-length must be between 8 and {task.data.max_length_limit}, "
                          f"got {max_length}")
    return max_length


def _refuse_output(output: Path, source: Any, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file, not a folder; name a new folder")
    if isinstance(source, (str, os.PathLike)) and output.exists() and (
            Path(source).resolve() == output.resolve()
            or output.resolve() in Path(source).resolve().parents):
        raise ConfigError(f"--output {output} holds the input {source}; name another folder")
    if output.exists() and any(output.iterdir()):
        if not (output / MARKER).is_file():
            raise ConfigError(f"{output} is not empty and was not written by tfsft preprocess; "
                              "name a new folder")
        if not overwrite:
            raise ConfigError(f"{output} already holds shards; pass --overwrite to replace "
                              "them, or name a new folder")
        foreign = sorted(p.name for p in output.iterdir() if not _written_here(p.name))
        if foreign:
            raise ConfigError(f"{output} holds files tfsft preprocess did not write "
                              f"({', '.join(foreign[:5])}); --overwrite replaces the whole "
                              "folder, so move them out first, or name a new folder")


def _written_here(name: str) -> bool:
    """Whether a shard folder entry is one ``tfsft preprocess`` writes."""
    return (name in (MARKER, MANIFEST_FILE, TOKENIZER_DIR, CALIBRATION_FILE)
            or (name.startswith("train-") and name.endswith(".tfrecord")))


def _encode_chunks(task: Task, chunks: Iterator[Any], folder: Path, shards: int, workers: int,
                   seed: int, rows_read: int, progress: bool) -> dict[str, Any]:
    """Encode chunks on ``workers`` threads; rows go to random shards (in chunk order)."""
    local = threading.local()

    def encode(index: int, chunk: Any) -> _ChunkResult:
        if not hasattr(local, "task"):  # each thread its own task: encode() keeps notes
            local.task = task.with_options()
        return _encode_chunk(local.task, index, chunk, seed)

    spool = _ShardSpool(folder, shards, seed, task.max_length)
    pending: list[Future] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfsft-encode")
    try:
        with _progress(progress, "tokenizing", "rows", total=rows_read) as bar:
            for index, chunk in enumerate(chunks):
                pending.append(pool.submit(encode, index, chunk))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    result = pending.pop(0).result()
                    spool.collect(result)
                    bar.update(result.examples + sum(result.skipped.values()))
            while pending:
                result = pending.pop(0).result()
                spool.collect(result)
                bar.update(result.examples + sum(result.skipped.values()))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: no more chunks encoded
        spool.close()
    return spool.finish(progress)


def _encode_chunk(task: Task, index: int, chunk: Any, seed: int) -> _ChunkResult:
    """One chunk read, encoded and serialized by ``task`` (a copy of its own per thread)."""
    examples = task.data.read(chunk, role="chunk")
    if len(examples) == 0:  # every row skipped (excluded labels): nothing to write
        return _ChunkResult([], 0, np.zeros(0, np.int32), {}, None, _skipped(examples), [], {})
    encoded = task.data.encode(task.tokenizer, examples, task.max_length, training=True)
    picks, keys = _calibration_picks(index, len(examples), seed)
    calibration = task.data.example_records(examples.subset(picks)) if len(picks) else []
    specs = feature_specs(encoded)
    return _ChunkResult(serialize_rows(encoded, specs), len(examples),
                        np.asarray(encoded.lengths), specs,
                        task.data.target_summary(examples), _skipped(examples),
                        list(zip(keys, calibration, strict=True)), task.data.encoding_notes())


class _ShardSpool:
    """Deals the encoded rows of each chunk to the shard files in turn (in a seeded random
    order within the chunk) and keeps the statistics
    of the manifest; :meth:`finish` shuffles every shard and returns them."""

    def __init__(self, folder: Path, shards: int, seed: int, max_length: int):
        self.folder, self.seed, self.max_length = folder, seed, max_length
        self.names = [f"train-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
        self.unshuffled = [folder / f".{n}.unshuffled" for n in self.names]
        self.writers = [_RecordSpool(path) for path in self.unshuffled]
        self.dealer = np.random.default_rng([seed, 1])
        self.dealt = 0
        self.counts = [0] * shards
        self.stats: dict[str, Any] = {"rows": 0, "examples": 0, "tokens": 0, "rows_at_max_length": 0,
                                      "skipped": Counter(), "specs": None, "notes": Counter()}
        self.length_counts = np.zeros(max_length + 1, np.int64)
        self.targets: list[dict[str, Any]] = []
        self.calibration: list[tuple[float, dict[str, Any]]] = []

    def collect(self, result: _ChunkResult) -> None:
        stats = self.stats
        stats["skipped"].update(result.skipped)
        if not result.records:
            return
        if stats["specs"] is None:
            stats["specs"] = result.specs
        elif result.specs != stats["specs"]:
            raise DataError(str(self.folder), None, "chunks encoded to different features "
                            f"({result.specs} vs {stats['specs']})", "report this as a bug")
        # dealt in turn from a shuffled order: the shards differ by at most one row, and none
        # is empty while there are rows for it
        count = len(self.writers)
        turns = (self.dealt + np.arange(len(result.records))) % count
        shards = turns[self.dealer.permutation(len(turns))]
        self.dealt += len(turns)
        for record, shard in zip(result.records, shards, strict=True):
            self.writers[shard].write(record)  # shuffled within the shard later
            self.counts[shard] += 1
        stats["rows"] += len(result.records)
        stats["examples"] += result.examples
        stats["tokens"] += int(result.lengths.sum())
        stats["rows_at_max_length"] += int((result.lengths >= self.max_length).sum())
        np.add.at(self.length_counts, np.minimum(result.lengths, self.max_length), 1)
        for key, value in result.notes.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats["notes"][key] += value
        if result.target_summary:
            self.targets.append(result.target_summary)
        self.calibration.extend(result.calibration)
        self.calibration.sort(key=lambda pair: pair[0])
        del self.calibration[CALIBRATION_ROWS:]

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def finish(self, progress: bool) -> dict[str, Any]:
        folder, stats = self.folder, self.stats
        _shuffle_shards(self.unshuffled, [folder / n for n in self.names], self.seed, progress)
        stats["shards"] = []
        for name, count in zip(self.names, self.counts, strict=True):
            if count == 0:  # no row was dealt to it (rows skipped, or few rows): no file
                (folder / name).unlink(missing_ok=True)
                continue
            stats["shards"].append({"file": name, "rows": count,
                                    "bytes": (folder / name).stat().st_size})
        stats["skipped"] = dict(stats["skipped"])
        stats["notes"] = dict(stats["notes"])
        stats["length_counts"] = {str(i): int(c) for i, c in enumerate(self.length_counts) if c}
        stats["target_summary"] = merge_target_summaries(self.targets)
        stats["calibration"] = [record for _, record in self.calibration]
        return stats


class _RecordSpool:
    """Records appended to a file as (8-byte length, bytes): rows waiting for their shard to be
    shuffled."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, record: bytes) -> None:
        self._file.write(len(record).to_bytes(8, "little"))
        self._file.write(record)

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def read(path: Path) -> list[bytes]:
        data, records, position = path.read_bytes(), [], 0
        while position < len(data):
            size = int.from_bytes(data[position:position + 8], "little")
            records.append(data[position + 8:position + 8 + size])
            position += 8 + size
        return records


def _shuffle_shards(sources: Sequence[Path], targets: Sequence[Path], seed: int,
                    progress: bool) -> None:
    """Write each shard's rows in a seeded random order (one shard in memory at a time): with
    rows dealt to random shards first, the shards are a random permutation of the whole file,
    however it was sorted, and reading them through a shuffle buffer mixes it well."""
    import tensorflow as tf

    with _progress(progress, "shuffling shards", "shards", total=len(sources)) as bar:
        for index, (source, target) in enumerate(zip(sources, targets, strict=True)):
            records = _RecordSpool.read(source)
            order = np.random.default_rng([seed, 2, index]).permutation(len(records))
            with tf.io.TFRecordWriter(str(target)) as writer:
                for position in order:
                    writer.write(records[position])
            del records
            source.unlink()
            bar.update(1)


def _skipped(examples: Any) -> dict[str, int]:
    skipped = getattr(examples, "skipped", None) or {}
    if isinstance(skipped, int):
        return {"rows": skipped} if skipped else {}
    return {str(k): int(v) for k, v in skipped.items()}


def _calibration_picks(chunk: int, rows: int, seed: int) -> tuple[np.ndarray, list[float]]:
    """Rows of a chunk that may enter the calibration sample, and their keys: every row gets
    a seeded uniform key and the sample is the ``CALIBRATION_ROWS`` rows with the smallest
    keys in the whole file, so a chunk offers its rows with the smallest keys."""
    keys = np.random.default_rng([seed, chunk]).random(rows)
    picks = np.sort(np.argsort(keys, kind="stable")[:CALIBRATION_ROWS])
    return picks, keys[picks].tolist()


def merge_target_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The chunks' target summaries added up: counts of ``classes``/``labels``/``tags``
    summaries; other kinds are not added up (None)."""
    if not summaries:
        return None
    kind = summaries[0].get("kind")
    if kind not in ("classes", "labels", "tags") or any(
            s.get("kind") != kind or "counts" not in s for s in summaries):
        return None
    from tfsft.data.checks import class_counts

    counts: Counter[str] = Counter()
    for summary in summaries:
        counts.update(summary["counts"])
    return class_counts(list(counts), list(counts.values()), kind=kind)


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    from tfsft.io_utils import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _progress(enabled: bool, description: str, unit: str, total: int | None = None) -> Any:
    """A tqdm progress bar on stderr (a silent one when ``enabled`` is false)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=f" {unit}", unit_scale=True,
                mininterval=1.0, dynamic_ncols=True, disable=not enabled)


