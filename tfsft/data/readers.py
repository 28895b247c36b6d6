"""Read tables of labelled text from files, DataFrames and Hugging Face datasets.

Every reader returns a :class:`Table`: the column names, the rows as dicts and, for each row, where
it came from (``line 12``, ``row 3``), so that later checks can point the user at the exact place.

>>> import pandas as pd
>>> table = read_table(pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}))
>>> table.columns, table.rows[1], table.locations[1]
(['text', 'label'], {'text': 'bad', 'label': 0}, 'row with index 1')
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import contextvars
import csv
import gzip
import io
import json
import lzma
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tfsft.errors import DataError
from tfsft.io_utils import split_lines

_COMPRESSIONS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, ValueError)
FILE_FORMATS = ("csv", "tsv", "jsonl", "parquet")


@dataclass
class Table:
    """Rows read from one source, with the location of each row for error messages."""

    source: str
    columns: list[str]
    rows: list[dict[str, Any]]
    locations: list[str]

    def __len__(self) -> int:
        return len(self.rows)


def read_table(source: Any, file_format: str | None = None, encoding: str = "utf-8",
               delimiter: str | None = None, quoting: bool = True) -> Table:
    """Read a CSV/TSV/JSONL/Parquet file (optionally .gz/.bz2/.xz), a DataFrame or a HF Dataset.

    ``file_format`` overrides the format guessed from the file extension. A folder written by
    ``datasets.Dataset.save_to_disk`` is read as a Hugging Face dataset. CSV and TSV files
    honour double quotes the way ``pandas.to_csv`` writes them (a quoted field may hold the
    delimiter, a newline or ``""``); ``quoting=False`` reads every quote as plain text.
    ``delimiter`` replaces the format's own (``,`` or a tab), e.g. ``";"``.
    """
    if isinstance(source, Table):
        return source
    if _is_dataframe(source):
        return _read_dataframe(source)
    if _is_hf_dataset(source):
        return _read_hf_dataset(source, name="Hugging Face dataset")
    path = _existing_file(source)
    if path.is_dir():
        return _read_hf_dataset_folder(path)
    fmt = file_format or guess_format(path)
    if fmt == "parquet":
        return _with_origin(path, _read_parquet(path))
    text = _decode(path, _read_bytes(path), encoding)
    return _with_origin(path, _collect(path, _records(path, fmt, io.StringIO(text, newline=""),
                                                      delimiter, quoting)))


_ORIGINS: contextvars.ContextVar[dict[Path, tuple[str, list[str]]] | None] = (
    contextvars.ContextVar("tfsft_row_origins", default=None))


@contextlib.contextmanager
def rows_copied_from(origins: dict[str | os.PathLike, tuple[str, list[str]]]) -> Iterator[None]:
    """While active, :func:`read_table` reads each file of ``origins`` (rows copied out of
    another file, in order) as the rows it copied: the table names the original ``source`` and
    each row's location there, so every message about a row points at the file the user wrote.
    ``tfsft cv`` reads its fold files this way.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fold-1.csv"
    >>> _ = path.write_text("text,label\\ngreat,pos\\n")
    >>> with rows_copied_from({path: ("reviews.csv (fold 1)", ["line 7"])}):
    ...     table = read_table(path)
    >>> table.source, table.locations
    ('reviews.csv (fold 1)', ['line 7'])
    """
    token = _ORIGINS.set({**(_ORIGINS.get() or {}), **{Path(path).resolve(): origin
                                               for path, origin in origins.items()}})
    try:
        yield
    finally:
        _ORIGINS.reset(token)


def _with_origin(path: Path, table: Table) -> Table:
    origin = (_ORIGINS.get() or {}).get(path.resolve())
    if origin is None or len(origin[1]) != len(table):  # not a copy, or edited since
        return table
    return Table(origin[0], table.columns, table.rows, list(origin[1]))


def iter_table_chunks(source: Any, chunk_rows: int = 8192, file_format: str | None = None,
                      encoding: str = "utf-8", delimiter: str | None = None,
                      quoting: bool = True) -> Iterator[Table]:
    r"""The rows of ``source`` (as :func:`read_table` reads them) in tables of at most
    ``chunk_rows`` rows, read as they are needed: a CSV/TSV/JSONL file (also compressed) or a
    Parquet file is never held in memory whole. Locations are those of the whole file.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
    >>> _ = path.write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\n")
    >>> [(len(t), t.locations[0]) for t in iter_table_chunks(path, chunk_rows=2)]
    [(2, 'line 2'), (1, 'line 4')]
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if _is_hf_dataset(source) or (isinstance(source, (str, os.PathLike))
                                  and Path(source).is_dir()):
        dataset = source if _is_hf_dataset(source) else _load_hf_dataset_folder(Path(source))
        name = "Hugging Face dataset" if _is_hf_dataset(source) else str(source)
        for start in range(0, max(len(dataset), 1), chunk_rows):  # Arrow, memory-mapped
            part = dataset.select(range(start, min(start + chunk_rows, len(dataset))))
            yield _read_hf_dataset(part, name, first=start)
        return
    if _is_dataframe(source):
        table = read_table(source)  # in memory already
        for start in range(0, len(table), chunk_rows):
            stop = start + chunk_rows
            yield Table(table.source, table.columns, table.rows[start:stop],
                        table.locations[start:stop])
        return
    path = _existing_file(source)
    fmt = file_format or guess_format(path)
    if fmt == "parquet":
        yield from _parquet_chunks(path, chunk_rows)
        return
    with _open_binary(path) as stream:
        records = _records(path, fmt, _decoded_lines(path, stream, encoding), delimiter, quoting)
        columns = next(records)
        rows: list[dict[str, Any]] = []
        locations: list[str] = []
        chunks = 0
        for row, location in records:
            rows.append(row)
            locations.append(location)
            if len(rows) == chunk_rows:
                yield _chunk(path, columns, rows, locations)
                rows, locations, chunks = [], [], chunks + 1
        if rows or not chunks:  # an empty table makes the readers say the file has no rows
            yield _chunk(path, columns, rows, locations)


def _chunk(path: Path, columns: list[str] | dict[str, None], rows: list[dict[str, Any]],
           locations: list[str]) -> Table:
    if isinstance(columns, dict):  # JSONL: the keys seen so far
        if not rows and not columns:
            raise DataError(str(path), None, "the file holds no records",
                            "add one JSON object per line")
        return Table(str(path), list(columns), rows, locations)
    return Table(str(path), columns, rows, locations)


def _existing_file(source: Any) -> Path:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "Data must be a file path, a pandas DataFrame or a datasets.Dataset; "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    if not path.exists():
        raise DataError(str(path), None, "file not found", "check the path")
    if not path.is_dir():
        require_file(path)
    return path


def require_file(source: str | os.PathLike) -> Path:
    """``source`` as a path to a regular file; a missing path, a folder or a pipe (``<(...)``,
    ``/dev/stdin``, which can be read only once) is a :class:`DataError` that says what to do.

    >>> try:
    ...     require_file("/dev/null")
    ... except DataError as error:
    ...     print(error.problem)
    is a device or a pipe, not a file; tfsft reads its data more than once (to check it, then to use it)
    """
    path = Path(source)
    if not path.exists():
        raise DataError(str(path), None, "file not found", "check the path")
    if path.is_dir():
        raise DataError(str(path), None, "is a folder, not a file", "pass a file")
    if not path.is_file():
        raise DataError(str(path), None, "is a device or a pipe, not a file; tfsft reads its "
                        "data more than once (to check it, then to use it)",
                        "save it to a file first and pass that file")
    return path


def _records(path: Path, fmt: str, lines: Iterable[str], delimiter: str | None,
             quoting: bool) -> Iterator[Any]:
    """The column names (a list; for JSONL a dict that grows as keys appear), then
    ``(row, location)`` pairs."""
    if fmt in ("csv", "tsv"):
        return _delimited_records(path, lines, delimiter or ("," if fmt == "csv" else "\t"),
                                  quoting)
    if fmt == "jsonl":
        return _jsonl_records(path, lines)
    raise DataError(
        str(path), None, f"unknown file format {fmt!r}", f"use one of {', '.join(FILE_FORMATS)}"
    )


def _collect(path: Path, records: Iterator[Any]) -> Table:
    columns = next(records)
    rows, locations = [], []
    for row, location in records:
        rows.append(row)
        locations.append(location)
    return _chunk(path, columns, rows, locations)


_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


def visible(text: str) -> bool:
    """Whether ``text`` has a character that is neither whitespace nor zero-width."""
    return any(not c.isspace() and c not in _INVISIBLE for c in text)


#: Names of plain-text files, one text a line (optionally compressed).
TEXT_LINE_SUFFIXES = (".txt", ".txt.gz", ".txt.bz2", ".txt.xz")


def read_text_lines(source: str | os.PathLike, encoding: str = "utf-8") -> tuple[list[str], int]:
    r"""One text per line of a plain-text file (optionally compressed): the texts and how many
    blank lines were skipped. A line of only invisible characters is an error with its line.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "texts.txt"
    >>> _ = path.write_text("great film\n\n  a slow start\n")
    >>> read_text_lines(path)
    (['great film', '  a slow start'], 1)
    """
    numbered, blank = read_numbered_text_lines(source, encoding)
    return [text for _, text in numbered], blank


def read_numbered_text_lines(source: str | os.PathLike,
                             encoding: str = "utf-8") -> tuple[list[tuple[int, str]], int]:
    r"""As :func:`read_text_lines`, with each text's line number (from 1).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "texts.txt"
    >>> _ = path.write_text("great film\n\n  a slow start\n")
    >>> read_numbered_text_lines(path)
    ([(1, 'great film'), (3, '  a slow start')], 1)
    """
    path = Path(source)
    if path.is_dir():
        raise DataError(str(path), None, "is a folder, not a text file",
                        "pass a file with one text per line")
    require_file(path)
    texts, blank = [], 0
    for number, line in enumerate(split_lines(_decode(path, _read_bytes(path), encoding)), 1):
        if not line.strip():
            blank += 1
        elif not visible(line):
            raise DataError(str(path), f"line {number}", "the text holds only invisible "
                            "(zero-width) characters", "remove the line or give it a text")
        else:
            texts.append((number, line))
    return texts, blank


def guess_format(path: Path) -> str:
    """Format name from a file name: ``reviews.tsv.gz`` -> ``tsv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    aliases = {"csv": "csv", "tsv": "tsv", "tab": "tsv", "jsonl": "jsonl", "ndjson": "jsonl",
               "json": "jsonl", "parquet": "parquet", "pq": "parquet"}
    if ext not in aliases:
        raise DataError(
            str(path), None, f"cannot tell the file format from the extension {ext!r}",
            f"rename the file to .csv, .tsv, .jsonl or .parquet, or name its format "
            f"({'/'.join(FILE_FORMATS)}) with --format (tfsft export: --data-format)",
        )
    return aliases[ext]


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix in _COMPRESSIONS:
        try:
            raw = _COMPRESSIONS[suffix](raw)
        except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
            raise DataError(
                str(path), None, f"cannot decompress the {suffix} file ({exc})",
                "check that the file is complete and not corrupted",
            ) from exc
    return raw


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            str(path), f"line {line}, column {column}",
            f"bytes {raw[exc.start:exc.end]!r} are not valid {encoding}",
            f"re-save the file as {encoding}, or pass its encoding (--encoding latin-1, ...)",
        ) from exc
    nul = text.find("\x00")
    if nul >= 0:
        _raise_nul(path, text, nul, text.count("\n", 0, nul) + 1, encoding)
    return text.removeprefix("\ufeff")


def _open_binary(path: Path) -> IO[bytes]:
    opener = _OPENERS.get(path.suffix.lower(), open)
    return opener(path, "rb")


def _decoded_lines(path: Path, stream: IO[bytes], encoding: str,
                   block_size: int = 1 << 16) -> Iterator[str]:
    """Lines of a binary stream, decoded block by block (any encoding, UTF-16 included) and
    split at ``\\n``, ``\\r\\n`` or ``\\r`` as :func:`_decode` + ``io.StringIO(newline="")``
    would, ends kept; the same errors as :func:`_decode`: the line and column of undecodable
    bytes or of a NUL character."""
    decoder = codecs.getincrementaldecoder(encoding)()
    suffix = path.suffix.lower()
    line, column = 1, 0  # where the text decoded so far ends (column: bytes into the line)
    carry, first = "", True
    while True:
        try:
            block = stream.read(block_size)
        except _DECOMPRESS_ERRORS as exc:
            if suffix not in _COMPRESSIONS:
                raise
            raise DataError(
                str(path), None, f"cannot decompress the {suffix} file ({exc})",
                "check that the file is complete and not corrupted",
            ) from exc
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            buffered = len(exc.object) - len(block)  # bytes the decoder held from before
            before = exc.object[buffered:max(exc.start, buffered)]
            newline = before.rfind(b"\n")
            where_line = line + before.count(b"\n")
            where_column = (len(before) - newline if newline >= 0
                            else column + exc.start - buffered + 1)
            raise DataError(
                str(path), f"line {where_line}, column {where_column}",
                f"bytes {exc.object[exc.start:exc.end]!r} are not valid {encoding}",
                f"re-save the file as {encoding}, or pass its encoding (--encoding latin-1, ...)",
            ) from exc
        if first:
            text, first = text.removeprefix("\ufeff"), False
        nul = text.find("\x00")
        if nul >= 0:
            _raise_nul(path, carry + text, len(carry) + nul,
                       line + text.count("\n", 0, nul), encoding)
        newline = block.rfind(b"\n")
        line += block.count(b"\n")
        column = len(block) - newline - 1 if newline >= 0 else column + len(block)
        pieces = list(io.StringIO(carry + text, newline=""))
        # the last piece may continue in the next block (a "\r" may be half of "\r\n")
        carry = pieces.pop() if pieces and block and not pieces[-1].endswith("\n") else ""
        yield from pieces
        if not block:
            if carry:
                yield carry
            return


def _raise_nul(path: Path, text: str, nul: int, line: int, encoding: str) -> None:
    column = nul - (text.rfind("\n", 0, nul) + 1) + 1
    hint = ("the file looks UTF-16: pass --encoding utf-16" if encoding.lower().replace(
        "-", "") in ("utf8", "ascii") and text.count("\x00") * 3 > len(text) else
        "remove the NUL bytes; a text file never holds them")
    raise DataError(str(path), f"line {line}, column {column}",
                    "holds a NUL byte (\\x00): this is not plain text", hint)


def _delimited_records(path: Path, text_lines: Iterable[str], delimiter: str,
                       quoting: bool = True) -> Iterator[Any]:
    """The header, then ``(row, "line N")`` for each record of a delimited file."""
    lines = _LineCounter(text_lines)
    reader = csv.reader(lines, delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    name = {",": "CSV", "\t": "TSV"}.get(delimiter, f"{delimiter!r}-separated")
    previous_limit = csv.field_size_limit(_FIELD_SIZE_LIMIT)
    try:
        header = next(reader, None)
        while header is not None and not header:
            lines.start_record()
            header = next(reader, None)
        if header is None:
            raise DataError(str(path), None, "the file is empty", "add a header row and data rows")
        header = [name.strip() for name in header]
        _check_header(path, header)
        yield header
        lines.start_record()
        for fields in reader:
            line = lines.record_start
            lines.start_record()
            if not fields:
                continue  # blank line: holds no data
            if len(fields) != len(header):
                raise DataError(
                    str(path), f"line {line}",
                    f"expected {len(header)} fields ({', '.join(header)}) but found {len(fields)}",
                    "quote fields that contain the delimiter, or fix the row" if quoting
                    else "this file is read without quotes, so a field cannot hold the "
                         "delimiter; fix the row",
                )
            yield dict(zip(header, fields, strict=True)), f"line {line}"
    except csv.Error as exc:
        raise _malformed(path, name, lines, str(exc), quoting) from exc
    finally:
        csv.field_size_limit(previous_limit)


_FIELD_SIZE_LIMIT = 2**31 - 1  # the csv module's default (131,072 characters) is too small


class _LineCounter:
    """Lines for :mod:`csv`, remembering the line on which each record starts."""

    def __init__(self, lines: Iterable[str]):
        # Lines end at \n, \r\n or \r only, as csv expects (str.splitlines would also split at
        # \x0c, \x1c, \u2028 ... inside a text and change the data).
        self._lines = iter(lines)
        self.line = 0
        self.record_start = 1

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.line += 1
        return line

    def start_record(self) -> None:
        self.record_start = self.line + 1


def _malformed(path: Path, name: str, lines: _LineCounter, problem: str,
               quoting: bool) -> DataError:
    start = lines.record_start
    if "unexpected end of data" in problem or "EOF" in problem:
        return DataError(str(path), f"line {start}", "a quoted field that starts on this line is "
                         "never closed (the file ends inside it)",
                         "add the closing double quote, or pass --no-quoting if the quotes in "
                         "this file are plain text")
    if "expected after" in problem:
        return DataError(str(path), f"line {lines.line}", "text follows the closing quote of a "
                         "quoted field", "quote the whole field and double the quotes inside it "
                         "(\"he said \"\"hi\"\"\"), or pass --no-quoting if the quotes in this file "
                         "are plain text")
    return DataError(str(path), f"line {lines.line}", f"malformed {name} ({problem})",
                     "check the quotes on this line" if quoting else "fix this line")


def _check_header(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name:
            raise DataError(str(path), "line 1", f"column {index} of the header has no name",
                            "name every column in the header row")
        if name in seen:
            raise DataError(str(path), "line 1", f"column name {name!r} appears twice",
                            "give every column a unique name")
        seen.add(name)


class _RepeatedKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _jsonl_records(path: Path, lines: Iterable[str]) -> Iterator[Any]:
    """The column names seen so far (a dict that grows), then ``(record, "line N")``."""
    columns: dict[str, None] = {}
    yield columns
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_refuse_repeated_keys)
        except json.JSONDecodeError as exc:
            raise DataError(str(path), f"line {line_number}", f"invalid JSON ({exc.msg})",
                            "write one JSON object per line") from exc
        except _RepeatedKey as exc:
            raise DataError(str(path), f"line {line_number}", f"the key {exc.key!r} occurs "
                            "twice in one object (JSON keeps only the last value)",
                            "give each key once") from None
        if not isinstance(record, dict):
            raise DataError(str(path), f"line {line_number}",
                            f"expected a JSON object, found {type(record).__name__}",
                            "write one JSON object per line, e.g. {\"text\": ..., \"label\": ...}")
        columns.update(dict.fromkeys(record))
        yield record, f"line {line_number}"


def _read_parquet(path: Path) -> Table:
    chunks = list(_parquet_chunks(path, chunk_rows=None))
    rows = [row for chunk in chunks for row in chunk.rows]
    return Table(str(path), chunks[0].columns, rows,
                 [f"row {i}" for i in range(1, len(rows) + 1)])


def _parquet_chunks(path: Path, chunk_rows: int | None) -> Iterator[Table]:
    """Tables of at most ``chunk_rows`` rows (None: one table) read batch by batch."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        columns = list(parquet.schema_arrow.names)
        if chunk_rows is None:
            batches = [parquet.read()]
        else:
            batches = parquet.iter_batches(batch_size=chunk_rows)
        first = 1
        empty = True
        for batch in batches:
            rows = batch.to_pylist()
            empty = False
            yield Table(str(path), columns, rows,
                        [f"row {i}" for i in range(first, first + len(rows))])
            first += len(rows)
        if empty:
            yield Table(str(path), columns, [], [])
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises many types for unreadable files
        raise DataError(str(path), None, f"cannot read the Parquet file ({exc})",
                        "check that it is a complete Parquet file") from exc


def _is_dataframe(source: Any) -> bool:
    return type(source).__name__ == "DataFrame" and hasattr(source, "to_dict")


def _is_hf_dataset(source: Any) -> bool:
    return type(source).__name__ == "Dataset" and hasattr(source, "features")


def _read_dataframe(frame: Any) -> Table:
    rows = frame.to_dict("records")
    columns = [str(c) for c in frame.columns]
    rows = [{str(k): _none_if_nan(v) for k, v in row.items()} for row in rows]
    return Table("DataFrame", columns, rows, [f"row with index {i!r}" for i in frame.index])


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def _read_hf_dataset(dataset: Any, name: str, first: int = 0) -> Table:
    columns = list(dataset.column_names)
    rows = dataset.to_list()
    # ClassLabel columns hold ints; give them their names so labels read as the user wrote them.
    for column, feature in dataset.features.items():
        names = getattr(feature, "names", None)
        if names:
            for row in rows:
                if row[column] is not None and row[column] >= 0:
                    row[column] = names[row[column]]
    return Table(name, columns, rows, [f"example {i}" for i in range(first, first + len(rows))])


def _read_hf_dataset_folder(path: Path) -> Table:
    return _read_hf_dataset(_load_hf_dataset_folder(path), name=str(path))


def _load_hf_dataset_folder(path: Path) -> Any:
    if (path / ".tfsft-shards").is_file() or (path / "manifest.json").is_file():
        raise DataError(str(path), None, "is a shard folder written by tfsft preprocess, not "
                        "a table: only tfsft train --train reads it (validation, evaluation and "
                        "preprocessing take data files)", "pass the data file it was made from")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(str(path), None, "reading a dataset folder needs `datasets`",
                        "pip install datasets") from exc
    try:
        dataset = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(str(path), None, "this folder is not a saved Hugging Face dataset",
                        "pass a data file, or a folder written by Dataset.save_to_disk") from exc
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(str(path / s) for s in dataset)
        raise DataError(str(path), None, "this folder holds several splits",
                        f"pass one of them: {splits}")
    return dataset
