"""The manifest of a shard folder (``manifest.json``): what was written, and the checks
that a folder and a run agree with it.

A shard folder holds ``manifest.json`` (task, options and learned state, tokenizer hash, max
length, counts, skipped rows, the feature layout), the ``train-*.tfrecord`` files, the tokenizer
and ``calibration.jsonl`` (a seeded sample of the rows, for int8 export calibration).
"""


from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover

    pass

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
FORMAT = "tfsft-shards"
# 2: sentence-embedding shards store batch_groups (version 1 stored batch_round, which this
# reader would take for a target); a folder of another version is refused with what to do.
VERSION = 2
TOKENIZER_DIR = "tokenizer"
CALIBRATION_FILE = "calibration.jsonl"
CALIBRATION_ROWS = 256  # training rows kept for int8 export calibration
CHUNK_ROWS = 8192
# The stored feature by which reading keeps rows of one text out of one batch (not fed to the
# model): the ids of the texts a row holds (see tfsft.data.pipeline.distinct_batches).
BATCH_GROUPS = "batch_groups"
# The file tfsft preprocess writes into every shard folder it makes (and --overwrite looks for).
MARKER = ".tfsft-shards"
# The manifest key holding the checksum of the rest of it (an edited manifest is refused).
CHECKSUM = "checksum"
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
        """The manifest as JSON, with the checksum of everything else in it."""
        data = self._content()
        return {**data, CHECKSUM: content_sha256(data)}

    def _content(self) -> dict[str, Any]:
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
    written = data.pop(CHECKSUM, None)
    if written is not None and written != content_sha256(data):
        raise DataError(str(path), None, "was changed after tfsft preprocess wrote it (its "
                        "checksum no longer matches: labels, options, rows or shards differ "
                        "from what the shards hold)",
                        "restore the file, or run tfsft preprocess again")
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


def content_sha256(data: dict[str, Any]) -> str:
    """A hash of a manifest's JSON content (keys sorted, so that key order does not count)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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


def check_compatible(manifest: Manifest, tokenizer: Any, max_length: int | None) -> None:
    """Refuse shards made for another tokenizer or max length than the run's."""
    if max_length and max_length != manifest.max_length:
        raise ConfigError(f"{manifest.folder} was tokenized with --max-length "
                          f"{manifest.max_length}, not {max_length}; leave out --max-length, "
                          "or run tfsft preprocess again")
    if tokenizer_sha256(tokenizer) != manifest.tokenizer_sha256:
        raise ConfigError(f"{manifest.folder} was tokenized with another tokenizer than this "
                          f"run's (it was made with that of {manifest.model}): train that "
                          "model, or, if you named it, its tokenizer files changed since; run "
                          "tfsft preprocess again with the --model you train")


def shard_report(manifest: Manifest) -> dict[str, Any]:
    """The data check's description of pre-tokenized training data (from the manifest)."""
    report = {"source": str(manifest.folder), "preprocessed_from": manifest.source,
              "task": manifest.task, "model": manifest.model,
              "max_length": manifest.max_length,
              "examples": manifest.extra.get("examples"), "rows": manifest.rows,
              "total_tokens": manifest.tokens,
              "shards": len(manifest.shards),
              "rows_at_max_length": manifest.extra.get("rows_at_max_length")}
    if manifest.extra.get("target_summary"):
        report["labels"] = manifest.extra["target_summary"]
    if manifest.skipped:
        report["skipped"] = manifest.skipped
    return report


def shard_defaults(train: Any) -> dict[str, Any]:
    """``task``, ``task_options``, ``max_length`` and ``model`` of a folder written by ``tfsft
    preprocess`` (read from its manifest; empty for anything else). A shard folder whose
    manifest is missing or damaged is an error naming it."""
    if not isinstance(train, (str, Path)):
        return {}
    folder = Path(train)
    path = folder / MANIFEST_FILE
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        if (folder / MARKER).is_file():
            raise DataError(str(folder), None, f"{MANIFEST_FILE} is missing, so the shards "
                            "cannot be read", "restore it, or run tfsft preprocess again"
                            ) from None
        return {}
    return copy.deepcopy(_manifest_defaults(str(path), modified))  # callers may change it


@functools.lru_cache(maxsize=8)
def _manifest_defaults(path: str, modified: int) -> dict[str, Any]:
    """What :func:`shard_defaults` reads, once per manifest version (config checks call it
    several times per command)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        return {k: manifest[k] for k in ("task", "task_options", "max_length", "model")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = (f"lacks {exc}" if isinstance(exc, KeyError) else
                   f"cannot be read ({type(exc).__name__}: {exc})")
        raise DataError(path, None, f"{problem}: the shard folder's manifest is damaged",
                        "restore it, or run tfsft preprocess again") from None
