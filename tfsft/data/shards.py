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
>>> manifest = write_shards("text-classification", {"text_column": "sentence"},
...                         "train.tsv", "sst2-shards", model="minilm-l6",
...                         max_length=64, shards=8)                    # doctest: +SKIP
>>> read_manifest("sst2-shards").rows                                   # doctest: +SKIP
67349
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError, DataError
from tfsft.runs import CALIBRATION_EXAMPLES

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.base import Task

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
FORMAT = "tfsft-shards"
VERSION = 1
TOKENIZER_DIR = "tokenizer"
CALIBRATION_FILE = "calibration.jsonl"
CALIBRATION_ROWS = CALIBRATION_EXAMPLES  # training rows kept for int8 export calibration
CHUNK_ROWS = 8192
# Serialized rows held in the shuffle buffer while training (about 150 bytes each for SST-2).
SHUFFLE_ROWS = 65536
# Shard files read at the same time (each a TFRecord stream; parsing runs after).
READ_FILES = 4


def is_shard_folder(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a folder written by :func:`write_shards`."""
    return path is not None and (Path(path) / MANIFEST_FILE).is_file()


@dataclass
class FeatureSpec:
    """How one per-row value is stored: ``kind`` ``tokens`` (one value per token),
    ``row`` (a fixed ``shape`` per row), ``token_aligned`` (one per token, padded with ``pad``)
    or ``ragged`` (a row's own length, padded with ``pad``); ``dtype`` is the NumPy dtype."""

    kind: str
    dtype: str
    shape: list[int] = field(default_factory=list)
    pad: float | int = 0

    @property
    def stored_as(self) -> str:
        return "float" if np.dtype(self.dtype).kind == "f" else "int64"


@dataclass
class Manifest:
    """What ``manifest.json`` of a shard folder says (see the module docstring)."""

    folder: Path
    task: str
    task_options: dict[str, Any]
    task_state: dict[str, Any]
    max_length: int
    tokenizer_sha256: str
    rows: int
    tokens: int
    shards: list[dict[str, Any]]
    features: dict[str, FeatureSpec]
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [self.folder / shard["file"] for shard in self.shards]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "task": self.task,
                "task_options": self.task_options, "task_state": self.task_state,
                "max_length": self.max_length, "model": self.model, "source": self.source,
                "tokenizer_sha256": self.tokenizer_sha256, "rows": self.rows,
                "tokens": self.tokens, "skipped": self.skipped, "shards": self.shards,
                "features": {name: dataclasses.asdict(spec)
                             for name, spec in self.features.items()},
                **self.extra}


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a shard folder, checked: every shard file is there with its size."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise DataError(str(folder), None, f"no {MANIFEST_FILE}: this is not a folder written "
                        "by tfsft preprocess", "pass a data file, or run tfsft preprocess first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, f"not valid JSON ({exc})",
                        "run tfsft preprocess again") from exc
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise DataError(str(path), None, f"format {data.get('format')!r} version "
                        f"{data.get('version')!r}; this tfsft reads {FORMAT!r} version {VERSION}",
                        "run tfsft preprocess again with this tfsft")
    known = {f.name for f in dataclasses.fields(Manifest)} - {"folder", "features", "extra"}
    manifest = Manifest(
        folder=folder, features={name: FeatureSpec(**spec)
                                 for name, spec in data["features"].items()},
        extra={k: v for k, v in data.items()
               if k not in known | {"format", "version", "features"}},
        **{k: data[k] for k in known if k in data})
    for shard, file in zip(manifest.shards, manifest.files, strict=True):
        if not file.is_file():
            raise DataError(str(folder), None, f"shard {shard['file']} is missing",
                            "copy the whole folder, or run tfsft preprocess again")
        if file.stat().st_size != shard["bytes"]:
            raise DataError(str(file), None, f"holds {file.stat().st_size} bytes, the manifest "
                            f"says {shard['bytes']}: the file was cut short or changed",
                            "copy the whole folder again, or run tfsft preprocess again")
    return manifest


def tokenizer_sha256(tokenizer: Any) -> str:
    """A hash of the files ``tokenizer.save`` writes: equal hashes tokenize alike."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tfsft-tokenizer-") as folder:
        tokenizer.save(folder)
        return folder_sha256(Path(folder))


def folder_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# -- writing ----------------------------------------------------------------------------------

def feature_specs(encoded: EncodedData) -> dict[str, FeatureSpec]:
    """The stored features of an :class:`~tfsft.data.pipeline.EncodedData` (see
    :class:`FeatureSpec`): ``token_ids``, ``segment_ids``, ``target/NAME``,
    ``sample_weight`` and ``extra/NAME``."""
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

    records: list[bytes]
    lengths: np.ndarray
    specs: dict[str, FeatureSpec]
    target_summary: dict[str, Any] | None
    skipped: dict[str, int]
    calibration: list[dict[str, Any]]
    notes: dict[str, Any]


def write_shards(task_name: str, task_options: dict[str, Any] | None, source: Any,
                 output_dir: str | os.PathLike, model: str | os.PathLike = "minilm-l6",
                 max_length: int | None = None, shards: int = 8, chunk_rows: int = CHUNK_ROWS,
                 workers: int | None = None, seed: int = 42, overwrite: bool = False,
                 file_format: str | None = None, encoding: str = "utf-8",
                 delimiter: str | None = None, quoting: bool = True,
                 progress: bool = True) -> Manifest:
    """Tokenize ``source`` once into ``shards`` TFRecord files under ``output_dir``.

    Memory stays bounded by about ``workers * 2`` chunks of ``chunk_rows`` rows while reading,
    and by one shard's bytes while shuffling the shards (more shards, less memory). ``model``
    names the checkpoint whose tokenizer is used (and which ``tfsft train --train DIR`` must
    use too). ``overwrite`` replaces an earlier shard folder (never a folder this function did
    not write). Returns the manifest.
    """
    from tfsft.data.readers import iter_table_chunks
    from tfsft.io_utils import atomic_directory, atomic_write_json
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.base import create_task

    output = Path(output_dir)
    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    _refuse_output(output, source, overwrite)
    task = create_task(task_name, task_options or {})
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        task.refuse_chunked_file(Path(source), file_format)
    max_length = max_length or task.default_max_length
    if not 8 <= max_length <= task.max_length_limit:
        raise ConfigError(f"--max-length must be between 8 and {task.max_length_limit}, "
                          f"got {max_length}")
    checkpoint = resolve_checkpoint(model)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    reader = dict(chunk_rows=chunk_rows, file_format=file_format, encoding=encoding,
                  delimiter=delimiter, quoting=quoting)
    name = str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__

    started = time.perf_counter()
    summaries, rows_read = [], 0
    with _progress(progress, "reading labels and targets", "rows") as bar:
        for chunk in iter_table_chunks(source, **reader):
            summaries.append(task.learn_chunk(chunk))
            rows_read += len(chunk)
            bar.update(len(chunk))
    if not summaries:
        raise DataError(name, None, "there are no data rows", "add rows")
    task.merge_chunks(summaries, name)
    del summaries
    tokenizer = task.load_tokenizer(checkpoint, max_length)
    task.bind(tokenizer, max_length)
    learn_seconds = time.perf_counter() - started

    with atomic_directory(output, overwrite=output.exists()) as tmp:
        (tmp / MARKER).write_text("written by tfsft preprocess; --overwrite may replace this "
                                  "folder\n")
        tokenizer.save(tmp / TOKENIZER_DIR)
        stats = _encode_chunks(task, iter_table_chunks(source, **reader), tmp, shards,
                               workers, seed, rows_read, progress)
        if stats["rows"] == 0:
            raise DataError(name, None, "no rows are left to train on", "check the data")
        _write_jsonl(tmp / CALIBRATION_FILE, stats.pop("calibration"))
        manifest = Manifest(
            folder=output, task=task.name, task_options=task.options.to_dict(),
            task_state=task.state_dict(), max_length=max_length,
            tokenizer_sha256=folder_sha256(tmp / TOKENIZER_DIR), rows=stats["rows"],
            tokens=stats["tokens"], shards=stats["shards"], features=stats["specs"],
            skipped=stats["skipped"],
            source=str(Path(source).resolve()) if isinstance(source, (str, os.PathLike))
            else name,
            model=str(Path(model).resolve()) if Path(model).exists() else str(model),
            extra={"rows_read": rows_read, "rows_at_max_length": stats["rows_at_max_length"],
                   "length_counts": stats["length_counts"],
                   "target_summary": stats["target_summary"],
                   "encoding": stats["notes"], "chunk_rows": chunk_rows, "seed": seed,
                   "workers": workers,
                   "seconds": {"learn": round(learn_seconds, 3),
                               "total": round(time.perf_counter() - started, 3)}})
        atomic_write_json(tmp / MANIFEST_FILE, manifest.to_json())
    return manifest


MARKER = ".tfsft-shards"


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


def _encode_chunks(task: Task, chunks: Iterator[Any], folder: Path, shards: int, workers: int,
                   seed: int, rows_read: int, progress: bool) -> dict[str, Any]:
    """Encode chunks on ``workers`` threads; rows go to random shards (in chunk order)."""

    local = threading.local()

    def encode(index: int, chunk: Any) -> _ChunkResult:
        if not hasattr(local, "task"):  # each thread its own task: encode() keeps notes
            local.task = task.with_options()
        own = local.task
        examples = own.read(chunk, role="chunk")
        if len(examples) == 0:  # every row skipped (excluded labels): nothing to write
            return _ChunkResult([], np.zeros(0, np.int32), {}, None,
                                _skipped(examples), [], {})
        encoded = own.encode(own.tokenizer, examples, own.max_length, training=True)
        picks, keys = _calibration_picks(index, len(examples), seed)
        calibration = own.example_records(examples.subset(picks)) if len(picks) else []
        specs = feature_specs(encoded)
        return _ChunkResult(serialize_rows(encoded, specs), np.asarray(encoded.lengths), specs,
                            own.target_summary(examples), _skipped(examples),
                            list(zip(keys, calibration, strict=True)),
                            own.encoding_notes())

    names = [f"train-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    unshuffled = [folder / f".{n}.unshuffled" for n in names]
    writers = [_RecordSpool(path) for path in unshuffled]
    dealer = np.random.default_rng([seed, 1])
    counts = [0] * shards
    stats: dict[str, Any] = {"rows": 0, "tokens": 0, "rows_at_max_length": 0,
                             "skipped": Counter(), "specs": None, "notes": Counter()}
    length_counts = np.zeros(task.max_length + 1, np.int64)
    targets: list[dict[str, Any]] = []
    calibration: list[tuple[float, dict[str, Any]]] = []
    pending: list[Future] = []

    def collect(result: _ChunkResult) -> None:
        if not result.records:
            stats["skipped"].update(result.skipped)
            return
        if stats["specs"] is None:
            stats["specs"] = result.specs
        elif result.specs != stats["specs"]:
            raise DataError(str(folder), None, "chunks encoded to different features "
                            f"({result.specs} vs {stats['specs']})", "report this as a bug")
        for record, shard in zip(result.records,
                                 dealer.integers(0, shards, len(result.records)), strict=True):
            writers[shard].write(record)  # each row to a random shard, shuffled there later
            counts[shard] += 1
        stats["rows"] += len(result.records)
        stats["tokens"] += int(result.lengths.sum())
        stats["rows_at_max_length"] += int((result.lengths >= task.max_length).sum())
        np.add.at(length_counts, np.minimum(result.lengths, task.max_length), 1)
        stats["skipped"].update(result.skipped)
        for key, value in result.notes.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats["notes"][key] += value
        if result.target_summary:
            targets.append(result.target_summary)
        calibration.extend(result.calibration)
        calibration.sort(key=lambda pair: pair[0])
        del calibration[CALIBRATION_ROWS:]

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfsft-encode")
    try:
        with _progress(progress, "tokenizing", "rows", total=rows_read) as bar:
            for index, chunk in enumerate(chunks):
                pending.append(pool.submit(encode, index, chunk))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    result = pending.pop(0).result()
                    collect(result)
                    bar.update(len(result.records) + sum(result.skipped.values()))
            while pending:
                result = pending.pop(0).result()
                collect(result)
                bar.update(len(result.records) + sum(result.skipped.values()))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error: no more chunks encoded
        for writer in writers:
            writer.close()
    _shuffle_shards(unshuffled, [folder / n for n in names], seed, progress)
    stats["shards"] = [{"file": n, "rows": c, "bytes": (folder / n).stat().st_size}
                       for n, c in zip(names, counts, strict=True)]
    stats["skipped"] = dict(stats["skipped"])
    stats["notes"] = dict(stats["notes"])
    stats["length_counts"] = {str(i): int(c) for i, c in enumerate(length_counts) if c}
    stats["target_summary"] = merge_target_summaries(targets)
    stats["calibration"] = [record for _, record in calibration]
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


class _progress:
    """A tqdm progress bar on stderr (nothing when ``enabled`` is false)."""

    def __init__(self, enabled: bool, description: str, unit: str, total: int | None = None):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit=f" {unit}", unit_scale=True,
                             mininterval=1.0, dynamic_ncols=True)

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)


# -- reading ----------------------------------------------------------------------------------

def check_compatible(manifest: Manifest, tokenizer: Any, max_length: int | None) -> None:
    """Refuse shards made for another tokenizer or max length than the run's."""
    if max_length and max_length != manifest.max_length:
        raise ConfigError(f"{manifest.folder} was tokenized with --max-length "
                          f"{manifest.max_length}, not {max_length}; leave out --max-length, "
                          "or run tfsft preprocess again")
    if tokenizer_sha256(tokenizer) != manifest.tokenizer_sha256:
        raise ConfigError(f"{manifest.folder} was tokenized with another tokenizer (that of "
                          f"{manifest.model}); train the model it was made for, or run tfsft "
                          "preprocess again with --model")


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

    from tfsft.data.pipeline import (
        PARALLEL_BATCHES,
        WINDOW_BATCHES,
        _bucket_padder,
        count_batches,
        without_autotune,
    )

    window_batches = window_batches or WINDOW_BATCHES
    chosen = list(range(len(manifest.shards))) if files is None else list(files)
    rows = sum(manifest.shards[i]["rows"] for i in chosen)
    if max_rows is not None:
        rows = min(rows, max_rows)
    if rows == 0:
        raise DataError(str(manifest.folder), None, "the shards hold no rows",
                        "run tfsft preprocess again")
    paths = [str(manifest.files[i]) for i in chosen]
    file_names = tf.data.Dataset.from_tensor_slices(paths)
    file_names = file_names.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = file_names.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(paths), 16), block_length=1,
        num_parallel_calls=min(len(paths), READ_FILES), deterministic=True)
    records = records.shuffle(min(rows, SHUFFLE_ROWS), seed=seed, reshuffle_each_iteration=True)
    if max_rows is not None:
        records = records.take(rows)
    if steps is not None:
        records = records.repeat().take(steps * batch_size)
        rows = steps * batch_size
    specs = manifest.features
    parse_spec = _parse_spec(specs)
    window = batch_size * window_batches

    def parse_and_sort(serialized):
        parsed = tf.io.parse_example(serialized, parse_spec)
        order = tf.argsort(parsed["token_ids"].row_lengths(), stable=True)
        return {name: tf.gather(value, order) for name, value in parsed.items()}

    parsed = records.batch(window).map(parse_and_sort, num_parallel_calls=PARALLEL_BATCHES)
    batches = parsed.unbatch().ragged_batch(batch_size)
    batches = batches.shuffle(window_batches, seed=seed, reshuffle_each_iteration=True)
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

    dataset = batches.map(to_batch, num_parallel_calls=PARALLEL_BATCHES)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(
        count_batches(rows, batch_size)))
    return without_autotune(dataset)


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


def shard_report(manifest: Manifest) -> dict[str, Any]:
    """The data check's description of pre-tokenized training data (from the manifest)."""
    report = {"source": str(manifest.folder), "preprocessed_from": manifest.source,
              "rows": manifest.rows, "total_tokens": manifest.tokens,
              "shards": len(manifest.shards),
              "rows_at_max_length": manifest.extra.get("rows_at_max_length")}
    if manifest.extra.get("target_summary"):
        report["labels"] = manifest.extra["target_summary"]
    if manifest.skipped:
        report["skipped"] = manifest.skipped
    return report
