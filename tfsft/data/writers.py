r"""Write tables (rows of named columns) as CSV/TSV/JSONL/Parquet files, atomically.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "rows.tsv"
>>> write_table(path, ["text", "label"], [{"text": "good", "label": 1}])
>>> path.read_text()
'text\tlabel\ngood\t1\n'
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfsft.data.readers import guess_format

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def write_table(path: str | os.PathLike, columns: Sequence[str], rows: Sequence[dict[str, Any]],
                file_format: str | None = None, delimiter: str | None = None) -> None:
    """Write ``rows`` as CSV/TSV/JSONL/Parquet (the format from the name, ``.gz``/``.bz2``/
    ``.xz`` compressed by its last suffix), atomically: a partly written file never has the
    name."""
    from tfsft.io_utils import atomic_file

    path = Path(path)
    fmt = file_format or guess_format(path)
    with atomic_file(path) as tmp:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns}
                                                 for row in rows]), tmp)
            return
        opener = _OPENERS.get(path.suffix.lower())
        with (opener(tmp, "wt", encoding="utf-8", newline="") if opener
              else open(tmp, "w", encoding="utf-8", newline="")) as handle:
            if fmt == "jsonl":
                for row in rows:
                    handle.write(json.dumps({c: row.get(c) for c in columns},
                                            ensure_ascii=False) + "\n")
            else:
                writer = csv.writer(handle, delimiter=delimiter or ("\t" if fmt == "tsv" else ","),
                                    lineterminator="\n")
                writer.writerow(columns)
                writer.writerows([["" if row.get(c) is None else _cell(row.get(c))
                                   for c in columns] for row in rows])


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
