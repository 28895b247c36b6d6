"""Checked rows of text (and a second text) with their targets, as the sentence-level tasks
read them from a :class:`~tfsft.data.readers.Table`: every text checked row by row (errors name
the file and line), labels normalised, seeded validation splits.

>>> import pandas as pd
>>> from tfsft.data.readers import read_table
>>> rows = read_text_rows(read_table(pd.DataFrame({"review": ["great", "awful"]})), "review",
...                       None, [], None)
>>> rows.texts, normalize_label(2.0), sort_labels({"10", "9"})
(['great', 'awful'], '2', ('9', '10'))
"""

from __future__ import annotations

import dataclasses
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from tfsft.data.readers import Table, visible
from tfsft.errors import DataError

logger = logging.getLogger(__name__)
ExamplesT = TypeVar("ExamplesT", bound="TextExamples")
_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


@dataclass
class TextExamples:
    """Texts (and optional second texts) with per-example ``targets`` (or None: unlabelled).

    ``targets`` is an array with one row per example: label ids for classification, a 0/1
    matrix for multi-label classification, float values for regression. ``target_names`` names
    the labels or target columns. ``skipped`` counts rows left out on purpose, by reason.
    """

    texts: list[str]
    text_pairs: list[str] | None
    targets: np.ndarray | None
    target_names: tuple[str, ...]
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextExamples:
        """The examples at ``indices`` (same label list; ``skipped`` counts are kept)."""
        indices = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            texts=[self.texts[i] for i in indices],
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in indices],
            targets=None if self.targets is None else self.targets[indices],
            locations=[self.locations[i] for i in indices] if self.locations else [],
            skipped=dict(self.skipped),
        )


def normalize_label(value: Any) -> str | None:
    """A label as a string: ints and integral floats as ``"3"``; ``None``/NaN/blank as None;
    text in Unicode NFC, so that ``"posé"`` typed two ways is one label.

    >>> normalize_label(2.0), normalize_label(" 02 "), normalize_label("pose\u0301") == "pos\u00e9"
    ('2', '2', True)
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return normalize_label(value.item())
    text = unicodedata.normalize("NFC", str(value).strip())
    if _INTEGRAL.fullmatch(text):  # "2", "2.0" and "02" in a text file are the same label
        return str(int(float(text)))
    return text or None


def sort_labels(labels: set[str]) -> tuple[str, ...]:
    """A stable label order: numeric labels by value, others alphabetically."""
    try:
        return tuple(sorted(labels, key=int))
    except ValueError:
        return tuple(sorted(labels))


SKIP = object()  # returned by a target reader: leave this row out (counted)


@dataclass
class TextRows:
    """What :func:`read_text_rows` collected: texts, optional pairs, one target per row."""

    texts: list[str]
    text_pairs: list[str] | None
    targets: list[Any]
    locations: list[str]
    skipped: int


def read_text_rows(
    table: Table,
    text_column: str,
    text_pair_column: str | None,
    target_columns: Sequence[str] = (),
    read_target: Callable[[dict[str, Any], str], Any] | None = None,
    max_rows: int | None = None,
    flags: str = "--text-column / --text-pair-column / --label-column",
) -> TextRows:
    """Check ``table`` row by row: texts must be non-empty strings; ``read_target(row, where)``
    returns a row's target, raises :class:`DataError`, or returns :data:`SKIP` to leave the row
    out (counted in ``skipped``). Stops after ``max_rows`` kept rows."""
    named = [c for c in [text_column, text_pair_column, *target_columns] if c]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise DataError(table.source, None, f"column {repeated[0]!r} is named for two roles "
                        "(text, second text, label or target)",
                        f"name a different column for each ({flags})")
    for column in [text_column, text_pair_column, *target_columns]:
        if column and column not in table.columns:
            raise DataError(
                table.source, None, f"column {column!r} not found; the columns are "
                f"{', '.join(repr(c) for c in table.columns)}", f"pass the right name ({flags})")
    if len(table) == 0:
        raise DataError(table.source, None, "there are no data rows", "add rows below the header")
    rows = TextRows([], [] if text_pair_column else None, [], [], 0)
    for row, where in zip(table.rows, table.locations, strict=True):
        if max_rows is not None and len(rows.texts) >= max_rows:
            break
        if read_target is not None:
            target = read_target(row, where)
            if target is SKIP:
                rows.skipped += 1
                continue
            rows.targets.append(target)
        rows.texts.append(_checked_text(table, row, where, text_column))
        if rows.text_pairs is not None:
            rows.text_pairs.append(_checked_text(table, row, where, text_pair_column))
        rows.locations.append(where)
    return rows


def refuse_missing_value_marker(label: str | None, source: str, where: str, column: str) -> None:
    """A label such as ``NaN`` or ``NA`` is a missing value written out (pandas does so), not a
    class: an error naming the row."""
    from tfsft.data.checks import MISSING_VALUE_MARKERS

    if label in MISSING_VALUE_MARKERS:
        raise DataError(source, where, f"the label (column {column!r}) is {label!r}, which marks "
                        "a missing value", "give the row its label, or remove the row")


def _checked_text(table: Table, row: dict[str, Any], where: str, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(table.source, where, f"the text (column {column!r}) is missing",
                        "fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(table.source, where,
                        f"the text (column {column!r}) is {value!r:.40} ({type(value).__name__}), "
                        "not a string",
                        "store text as strings")
    if not visible(value):
        what = "empty" if not value.strip() else "only invisible (zero-width) characters"
        raise DataError(table.source, where, f"the text (column {column!r}) is {what}",
                        "fill it in or remove the row")
    return value


def split_examples(data: ExamplesT, validation_fraction: float, seed: int,
                   stratify: np.ndarray | None = None) -> tuple[ExamplesT, ExamplesT]:
    """A seeded split into training and validation examples (``stratify``: a class per row).

    >>> data = TextExamples([f"t{i}" for i in range(10)], None, np.arange(10.0)[:, None], ("y",))
    >>> train, validation = split_examples(data, 0.2, seed=0)
    >>> len(train), len(validation)
    (8, 2)
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    indices = np.arange(len(data))
    try:
        train_idx, val_idx = train_test_split(
            indices, test_size=validation_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(data.source, None, f"cannot split off a validation set ({exc})",
                        "pass a --validation file or change --validation-fraction") from exc
    train, validation = data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))
    # the data check's messages name the part they are about, not only the file
    return _named(train, "training split"), _named(validation, "validation split")


def _named(part: ExamplesT, name: str) -> ExamplesT:
    """``part`` (a fresh subset) with ``(name)`` after its source."""
    part.source = f"{part.source} ({name})"
    return part
